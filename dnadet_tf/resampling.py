"""Reading an enlargement back from a set of images: the periodic correlations that interpolation leaves.

An image enlarged by a factor r computes every new pixel as a weighted sum of old ones, with weights that
repeat every r new pixels. Where the weights put a new pixel between old ones, the image is smoother than
where they put it on one, so the local second derivative's magnitude varies with frequency 1/r cycles per
pixel, seen at f = 1 - 1/r after sampling for 1 < r < 2 (Popescu and Farid 2005; Kirchner 2008 read it from
the spectrum of the absolute second derivative, as here). A photo never resampled upward has no such
period; one resampled downward (with the filter widened, as Pillow does) keeps almost none.

One image's spectrum is noisy: content puts peaks anywhere. A set of images enlarged the same way shares
its peak, so the set is read as one:

    each image (central MAX_SIDE x MAX_SIDE px, grey)
      -> mean |x[i-1] - 2 x[i] + x[i+1]| along rows and along columns: two profiles
      -> their power spectra on BINS + 1 frequencies 0..0.5 cycles/px, averaged, divided by their median
         above MIN_FREQUENCY
    the images' spectra: their median at every frequency -> divided by a running median over BASELINE_BINS
         bins: prominence
    the highest prominence above MIN_FREQUENCY, when at least PROMINENCE, at f -> r = 1 / (1 - f)

Two findings are declined: fewer than MIN_IMAGES images large enough to read (the noise of a few images
reaches the threshold), and peaks at several multiples of 1/8 cycle/px, the 8-px block grid of an earlier
JPEG compression (lossless files converted from JPEG files carry it). Factors of 2 and above are not named:
2 puts the period at the spectrum's edge, where Pillow's half-pixel sampling leaves no variation in
magnitude, and r > 2 aliases to the same f as r / (r - 1) < 2, which is the one reported.

Measured by `benchmarks/resampling_detection.py` (docs/results.md, "Enlarged real photos read back"): 240 crops of the
packaged photos enlarged bicubic x1.28, x1.33, x1.5 or bilinear x1.25 give prominence 13.9-19.0 at their f, and
every one of 50 random subsets of 20 is read right (9.3 or more); the crops as cut, the zoos' real training
images and 168 lossless photos 1.1-1.3 (subsets of 20: 2.7 at most). Missed: a Lanczos x1.1 (1.6) and bicubic
x2 (1.1); a nearest-neighbour x1.6 (5 pixels to 8: a period of 8 px, harmonics at every 1/8) is declined as a
block grid (2 of 50 subsets of 20 read as x1.60), as JPEG at quality 60 is (9.0 at 1/4).
"""
import numpy as np

BINS = 256
MIN_FREQUENCY = 0.03  # below this, the profiles follow the content, not the interpolation
BASELINE_BINS = 31
PROMINENCE = 4.5
GRID_PROMINENCE = 2.5  # a second multiple of 1/8 this prominent marks a JPEG block grid
GRID_TOLERANCE = 0.01  # cycles/px: a 128 px image's spectrum has a bin every 1/126
MIN_IMAGES = 20
MAX_IMAGES = 400
MAX_SIDE = 512
MIN_IMAGE_SIDE = 32
_LUMA = np.array([0.299, 0.587, 0.114])


def frequencies():
    """(BINS + 1,) float64: the frequencies, 0..0.5 cycles/px, on which spectra are given."""
    return np.linspace(0.0, 0.5, BINS + 1)


def interpolation_spectrum(gray):
    """(H, W) float grey image -> (BINS + 1,) power spectrum of its second-derivative profiles, over
    `frequencies()`, divided by its median above MIN_FREQUENCY (so that every image weighs the same)."""
    grid = frequencies()
    spectra = []
    for rows in (gray, gray.T):
        profile = np.abs(rows[:, 2:] - 2.0 * rows[:, 1:-1] + rows[:, :-2]).mean(axis=0)
        profile = (profile - profile.mean()) * np.hanning(profile.size)
        power = np.abs(np.fft.rfft(profile)) ** 2
        spectra.append(np.interp(grid, np.fft.rfftfreq(profile.size), power))
    spectrum = np.mean(spectra, axis=0)
    median = np.median(spectrum[grid >= MIN_FREQUENCY])
    return spectrum / median if median > 0 else np.zeros_like(spectrum)


def prominence(spectra):
    """(N, BINS + 1) spectra -> (BINS + 1,) their median over the images divided by its running median over
    BASELINE_BINS bins (about 1 where nothing stands out).

    The median, not the mean: a peak counts when at least half the images have it, so one image with a
    strong period of its own (the windows of a facade) cannot make one for the set.
    """
    consensus = np.median(spectra, axis=0)
    padded = np.pad(consensus, BASELINE_BINS // 2, mode="edge")
    baseline = np.median(np.lib.stride_tricks.sliding_window_view(padded, BASELINE_BINS), axis=1)
    return np.where(baseline > 0, consensus / np.where(baseline > 0, baseline, 1.0), 0.0)


def block_grid(peaks, frequency):
    """True when `frequency` is within GRID_TOLERANCE of a multiple of 1/8 cycle/px and another such multiple
    stands out too (its highest prominence within GRID_TOLERANCE at least GRID_PROMINENCE)."""
    grid = frequencies()
    multiples = (0.125, 0.25, 0.375)
    if min(abs(frequency - m) for m in multiples) > GRID_TOLERANCE:
        return False
    others = [peaks[np.abs(grid - m) <= GRID_TOLERANCE].max() for m in multiples
              if abs(frequency - m) > GRID_TOLERANCE]
    return max(others) >= GRID_PROMINENCE


def grey_center(path):
    """The central at most MAX_SIDE x MAX_SIDE px of the image file `path`, grey, float64; None when a side is
    below MIN_IMAGE_SIDE."""
    from dnadet_tf.images import load_rgb

    rgb = load_rgb(path)
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        return None
    top, left = max(0, (height - MAX_SIDE) // 2), max(0, (width - MAX_SIDE) // 2)
    return rgb[top:top + MAX_SIDE, left:left + MAX_SIDE].astype(np.float64) @ _LUMA


def image_spectra(paths):
    """(N, BINS + 1) `interpolation_spectrum`s of the images at `paths` with both sides >= MIN_IMAGE_SIDE; at
    most MAX_IMAGES of them are read, evenly spaced through `paths`."""
    picked = list(paths)
    if len(picked) > MAX_IMAGES:
        picked = [picked[i] for i in np.linspace(0, len(picked) - 1, MAX_IMAGES).round().astype(int)]
    spectra = [interpolation_spectrum(gray) for gray in map(grey_center, picked) if gray is not None]
    return np.stack(spectra) if spectra else np.zeros((0, BINS + 1))


def highest_peak(spectra):
    """(N, BINS + 1) spectra -> (frequency, prominence) of the most prominent peak above MIN_FREQUENCY, and the
    (BINS + 1,) prominence it was read from."""
    peaks = prominence(spectra)
    grid = frequencies()
    index = int(np.argmax(np.where(grid >= MIN_FREQUENCY, peaks, 0.0)))
    return float(grid[index]), float(peaks[index]), peaks


def read_enlargement(paths):
    """The factor by which the images at `paths` were enlarged, read from their interpolation period.

    Returns (r or None, a line saying what was found): `enlargement` of their `image_spectra`.
    """
    return enlargement(image_spectra(paths))


def enlargement(spectra):
    """(N, BINS + 1) images' `interpolation_spectrum`s -> (r or None, a line saying what was found).

    r is 1 / (1 - f), 1 < r < 2, when the images' consensus spectrum has a peak at f of prominence >=
    PROMINENCE that is not a JPEG block grid; None otherwise, and for fewer than MIN_IMAGES images.
    """
    if len(spectra) < MIN_IMAGES:
        return None, (f"{len(spectra)} images of at least {MIN_IMAGE_SIDE} px, too few to read a resampling "
                      f"from ({MIN_IMAGES} needed)")
    frequency, height, peaks = highest_peak(spectra)
    found = f"highest interpolation peak {height:.1f} at {frequency:.3f} cycles/px over {len(spectra)} images"
    if height < PROMINENCE:
        return None, f"no resampling found ({found}, {PROMINENCE} needed)"
    if block_grid(peaks, frequency):
        return None, f"no resampling found: peaks at multiples of 1/8 cycle/px, a JPEG block grid ({found})"
    factor = 1.0 / (1.0 - frequency)
    return factor, f"enlarged about {factor:.2f}x ({found})"
