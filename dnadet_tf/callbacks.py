"""What the training loop does around its step, one callback each: the progress line, the
JSONL log, TensorBoard, best-model keeping, early stopping and checkpoints.

A small equivalent of Keras's callback API for the step-indexed loop of `trainer.Trainer`
(which keeps resume exact): the loop calls, in list order,

  build(trainer)                     once, when the trainer's models exist, before its checkpoint
                                     is made (for state shaped like the model)
  on_log(trainer, step, record)      every `log_every` steps and at the last step; `record` is
                                     the window's mean loss, cross-entropy, contrastive loss,
                                     accuracy, learning rate and patches/s (metrics.jsonl's record)
  on_validation(trainer, step, logs) after each validation; logs["metrics"] holds the figures,
                                     and callbacks add to `logs` ("kept", "averaged", "stop") for
                                     later ones
  on_step_end(trainer, step, logs)   after every step; `logs["stop"]` ends training
  on_train_end(trainer, summary)     once, after the loop; may add to the summary dict
  stopped()                          before the loop: True when the state restored from a
                                     checkpoint had ended training (a run resumed after it stopped
                                     early trains no further)

The loop's position is on the trainer: `trainer.start_step`, `trainer.target`, `trainer.began`.

A callback whose state must survive a resume exposes it as `state`, a dict of tf.Variables
that the Trainer puts in its checkpoint.
"""
import math
import time

import numpy as np
import tensorflow as tf

from dnadet_tf.selection import average_weights, is_better

# Validation figures that are not scalars, left out of the log and TensorBoard.
NON_SCALAR = ("per_class_recall", "confusion_matrix")


class Callback:
    """Does nothing; subclasses override what they need."""

    state = {}

    def build(self, trainer):
        pass

    def on_log(self, trainer, step, record):
        pass

    def on_validation(self, trainer, step, logs):
        pass

    def on_step_end(self, trainer, step, logs):
        pass

    def on_train_end(self, trainer, summary):
        pass

    def stopped(self):
        return False


def _scalar(name, value, dtype):
    return tf.Variable(value, dtype=dtype, trainable=False, name=name)


class BestModel(Callback):
    """Keeps best.keras when `selection.is_better(select, ...)` prefers the validated model
    (and every validated model in RUN/validated/ with `keep_validated`); without validation
    data, the last step's model, except under rule `average`. Sets logs["kept"].

    Rule `average` keeps the weights of the last `average_last` validated models in a ring
    of slots (part of the checkpoint, so a resumed run averages the same models) and writes
    their mean as best.keras at every validation; at the end it validates that mean once,
    so the summary's best_metric is the averaged model's own figure. It reads no validation
    figure, so without validation data it averages the models of the steps a validation
    would have come at (every `val_every` steps and the last): the same best.keras.
    """

    def __init__(self, select, metric, keep_validated=False, average_last=4):
        self.select, self.metric, self.keep_validated = select, metric, keep_validated
        self.average_last = average_last
        self.best_metric = _scalar("best_metric", -math.inf, tf.float64)
        self.best_nll = _scalar("best_nll", math.inf, tf.float64)
        self.state = {"best_metric": self.best_metric, "best_nll": self.best_nll}
        self.slots = None

    def build(self, trainer):
        if self.select != "average":
            return
        weights = trainer.classifier.get_weights()
        self.slots = [[tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False) for w in weights]
                      for _ in range(self.average_last)]
        # The step of the model in each slot, -1 while empty; steps only grow, so the smallest
        # entry is always the slot to fill next (an empty one, else the oldest).
        self.slot_steps = tf.Variable(tf.fill([self.average_last], tf.constant(-1, tf.int64)), trainable=False)
        self.state = dict(self.state, averaged_steps=self.slot_steps,
                          averaged_weights={f"slot_{i}": {f"w{j}": v for j, v in enumerate(slot)}
                                            for i, slot in enumerate(self.slots)})

    def averaged_steps(self):
        """The steps of the models in the average, in step order."""
        return sorted(int(s) for s in self.slot_steps.numpy() if s >= 0)

    def _averaged(self):
        """The mean weight list of the filled slots, oldest first."""
        steps = self.slot_steps.numpy()
        return average_weights([[v.numpy() for v in self.slots[i]] for i in np.argsort(steps) if steps[i] >= 0])

    def _with_average(self, trainer, work, own):
        """Runs `work()` while the classifier holds the averaged weights; then puts `own`, its weights, back."""
        trainer.classifier.set_weights(self._averaged())
        try:
            return work()
        finally:
            trainer.classifier.set_weights(own)

    def on_validation(self, trainer, step, logs):
        value, nll = logs["metrics"][self.metric], logs["metrics"]["nll"]
        if trainer.chief and self.keep_validated:
            trainer.run.save_validated(trainer.classifier, step)
        logs["kept"] = is_better(self.select, value, nll, float(self.best_metric.numpy()),
                                 float(self.best_nll.numpy()))
        if self.slots is not None:
            logs["averaged"] = self._add_to_average(trainer, step)
            return
        if logs["kept"]:
            self.best_metric.assign(value)
            self.best_nll.assign(nll)
            if trainer.chief:
                trainer.run.save_best(trainer.classifier)

    def _add_to_average(self, trainer, step):
        """Puts the classifier's weights of `step` in the next slot and writes the new mean as best.keras;
        returns how many models the mean holds."""
        own = trainer.classifier.get_weights()
        slot = int(np.argmin(self.slot_steps.numpy()))
        for variable, array in zip(self.slots[slot], own):
            variable.assign(array)
        self.slot_steps[slot].assign(step)
        if trainer.chief:
            self._with_average(trainer, lambda: trainer.run.save_best(trainer.classifier), own)
        return len(self.averaged_steps())

    def on_step_end(self, trainer, step, logs):
        # Rule `average` without validation data: the models of the steps a validation would have come at.
        if self.slots is None or trainer.val_dataset is not None:
            return
        if trainer.validation_due(step):
            logs["averaged"] = self._add_to_average(trainer, step)

    def on_train_end(self, trainer, summary):
        if self.slots is not None and self.averaged_steps():
            summary["averaged_steps"] = self.averaged_steps()
            if trainer.val_dataset is not None:
                metrics = self._with_average(trainer, trainer.validate, trainer.classifier.get_weights())
                self.best_metric.assign(metrics[self.metric])
                self.best_nll.assign(metrics["nll"])
        elif trainer.val_dataset is None and trainer.chief:
            trainer.run.save_best(trainer.classifier)
        summary["best_metric"] = float(self.best_metric.numpy())


class EarlyStopping(Callback):
    """Sets logs["stop"] after `patience` validations in a row in which neither the metric
    (rounded to 4 decimals) nor the validation cross-entropy improved, whatever the selection rule."""

    def __init__(self, metric, patience):
        self.metric, self.patience = metric, patience
        self.top_metric = _scalar("top_metric", -math.inf, tf.float64)
        self.low_nll = _scalar("low_nll", math.inf, tf.float64)
        self.evals_since_best = _scalar("evals_since_best", 0, tf.int64)
        self.state = {"top_metric": self.top_metric, "low_nll": self.low_nll,
                      "evals_since_best": self.evals_since_best}

    def on_validation(self, trainer, step, logs):
        value, nll = logs["metrics"][self.metric], logs["metrics"]["nll"]
        top, low = float(self.top_metric.numpy()), float(self.low_nll.numpy())
        progressed = round(value, 4) > round(top, 4) or nll < low
        self.top_metric.assign(max(value, top))
        self.low_nll.assign(min(nll, low))
        self.evals_since_best.assign(0 if progressed else self.evals_since_best + 1)
        logs["stop"] = self.stopped()

    def stopped(self):
        """Whether `patience` validations in a row have not improved: the loop stopped (or, restored, had)."""
        return int(self.evals_since_best.numpy()) >= self.patience


class Checkpoints(Callback):
    """Saves the Trainer's checkpoint every `every` steps, at the last step and when stopping."""

    def __init__(self, every):
        self.every = every

    def on_step_end(self, trainer, step, logs):
        if step % self.every == 0 or step == trainer.target or logs.get("stop"):
            trainer.manager.save(checkpoint_number=step)


class JsonlLog(Callback):
    """Appends a "train" record per log line and a "val" record per validation to metrics.jsonl."""

    def on_log(self, trainer, step, record):
        if trainer.chief:
            trainer.run.log({"kind": "train", **record})

    def on_validation(self, trainer, step, logs):
        if trainer.chief:
            trainer.run.log(validation_record(step, logs))


def validation_record(step, logs):
    """The metrics.jsonl record of a validation: its scalar figures."""
    return {"kind": "val", "step": step, **{k: v for k, v in logs["metrics"].items() if k not in NON_SCALAR}}


class TensorBoard(Callback):
    """Scalars train/* per log line and val/* per validation in RUN/tensorboard (chief only)."""

    TRAIN_KEYS = ("loss", "cross_entropy", "contrastive", "content_alignment", "accuracy", "learning_rate",
                  "patches_per_s")

    def __init__(self):
        self.writer = None

    def _writer(self, trainer):
        if self.writer is None and trainer.chief:
            self.writer = trainer.run.tensorboard_writer()
        return self.writer

    def on_log(self, trainer, step, record):
        writer = self._writer(trainer)
        if writer:
            with writer.as_default(step=step):
                for key in self.TRAIN_KEYS:
                    if key in record:
                        tf.summary.scalar(f"train/{key}", record[key])

    def on_validation(self, trainer, step, logs):
        writer = self._writer(trainer)
        if writer:
            with writer.as_default(step=step):
                for key, value in validation_record(step, logs).items():
                    if key not in ("kind", "step", "num_images"):
                        tf.summary.scalar(f"val/{key}", value)

    def on_train_end(self, trainer, summary):
        writer = self._writer(trainer)
        if writer:
            writer.flush()


class ProgressLine(Callback):
    """Prints the progress bar line per log, a line per validation, and the early stop (chief only)."""

    def __init__(self, select, metric, patience):
        self.select, self.metric, self.patience = select, metric, patience

    def on_log(self, trainer, step, record):
        unit = "patches/s" if trainer.use_patches else "images/s"
        bar = "#" * int(step / max(trainer.target, 1) * 20)
        eta = (time.time() - trainer.began) / (step - trainer.start_step) * (trainer.target - step)
        trainer.print(
            f"[{bar:<20}] step {step}/{trainer.target}  eta {int(eta) // 60}m{int(eta) % 60:02d}s  "
            f"loss {record['loss']:.4f}  ce {record['cross_entropy']:.4f}"
            + (f"  con {record['contrastive']:.4f}" if trainer.use_patches else "")
            + (f"  align {record['content_alignment']:.4f}" if "content_alignment" in record else "")
            + f"  acc {record['accuracy']:.3f}  lr {record['learning_rate']:.2e}  {record['patches_per_s']:.0f} {unit}"
        )

    def on_validation(self, trainer, step, logs):
        metrics = logs["metrics"]
        extras = "".join(f"  {key} {metrics[key]:.4f}" for key in sorted(metrics) if key.startswith("family_"))
        trainer.print(
            f"  validation at step {step}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}"
            f"  cross-entropy {metrics['nll']:.4f}{extras}"
            + (f"  (best.keras = mean of the last {logs['averaged']} validated model(s), rule 'average')"
               if "averaged" in logs else f"  (kept as best.keras, rule '{self.select}')" if logs.get("kept") else "")
        )

    def on_step_end(self, trainer, step, logs):
        if logs.get("stop"):
            trainer.print(f"early stop at step {step}: no better validation {self.metric} or cross-entropy "
                          f"in {self.patience} validations.")


def default_callbacks(config):
    """The callbacks of a run, in the order the loop has always done things: keep the model and
    count for early stopping, log, print; checkpoint after the step."""
    return [EarlyStopping(config.loop.metric, config.loop.patience),
            BestModel(config.loop.select, config.loop.metric, config.loop.keep_validated, config.loop.average_last),
            JsonlLog(), TensorBoard(), Checkpoints(config.loop.checkpoint_every),
            ProgressLine(config.loop.select, config.loop.metric, config.loop.patience)]
