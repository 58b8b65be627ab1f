"""Packaging for dnadet-tf.

`exports/` and `cli/` are top-level folders of the repository but install as
`dnadet_tf.exports` and `dnadet_tf.cli`, so nothing named plain `cli` lands in
site-packages. `web/app/` (the web app's static files) installs as `dnadet_tf.webapp`.
"""
import re

from setuptools import setup

# one version, dnadet_tf.__version__ (read as text: importing the package here would need its dependencies)
with open("dnadet_tf/__init__.py", encoding="utf-8") as init:
    VERSION = re.search(r'^__version__ = "([^"]+)"', init.read(), re.M).group(1)

setup(
    name="dnadet-tf",
    version=VERSION,
    description="DNA-Det deepfake network architecture attribution in Keras 3 / TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["dnadet_tf", "dnadet_tf.zoo", "dnadet_tf.pretrained", "dnadet_tf.exports", "dnadet_tf.cli",
              "dnadet_tf.webapp"],
    package_dir={
        "dnadet_tf": "dnadet_tf",
        "dnadet_tf.exports": "exports",
        "dnadet_tf.cli": "cli",
        "dnadet_tf.webapp": "web/app",
    },
    package_data={"dnadet_tf.zoo": ["demo_photos/*", "demo_photos/*/*"],
                  "dnadet_tf.pretrained": ["step1-*/*"],
                  "dnadet_tf.webapp": ["*.html", "*.css", "*.js", "*.webmanifest", "*.svg", "*.png", "*.txt"]},
    install_requires=[
        "tensorflow-cpu>=2.21,<2.22; platform_machine=='x86_64' or platform_machine=='AMD64'",
        "tensorflow>=2.21,<2.22; platform_machine!='x86_64' and platform_machine!='AMD64'",
        "keras>=3.10,<4",
        "numpy>=1.26,<3",
        "pillow>=10",
        "tf-keras-vis>=0.8.7,<0.9",
        "ai-edge-litert>=1.2",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "tensorboard>=2.20",
        # the 8-bit median filter of step 1 (`imageops.median_blur`)
        "opencv-python-headless>=4.8",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "playwright>=1.40"],
        # PyTorch only to build and save the authors' network in tests/test_torch_import.py;
        # `import-torch` itself reads checkpoints without it. Prefer a CPU build (README).
        "torch": ["torch>=2.1"],
    },
    entry_points={"console_scripts": ["dnadet-tf=dnadet_tf.cli.main:main"]},
)
