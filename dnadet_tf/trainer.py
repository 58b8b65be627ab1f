"""The one training loop, shared by transformation pre-training and
architecture classification: GradientTape in a tf.function under a
tf.distribute strategy.

The two steps differ only by their data (a `train_dataset(start_step)`
function and a validation dataset) and their number of classes.
"""
import math
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from dnadet_tf.distribute import is_chief
from dnadet_tf.losses import AutomaticWeightedLoss, classification_cross_entropy, supervised_contrastive_loss
from dnadet_tf.metrics import classification_metrics
from dnadet_tf.model import Backbone, Classifier, build_projection_head, probabilities as classifier_probabilities
from dnadet_tf.runs import RunDir
from dnadet_tf.selection import is_better


class Trainer:
    """Trains a DNA-Det classifier (or the paper's Base) into a run dir.

    Args:
      config: a `TrainConfig`.
      class_names: list of class names (label order).
      run: the `RunDir` (already started), or its path.
      strategy: a tf.distribute strategy.
      train_dataset: function start_step -> tf.data.Dataset of global batches
        (images, labels) as made by `pipeline.training_dataset`.
      val_dataset: function () -> tf.data.Dataset of (pixels (N,S,S,3), labels (N,)), or None.
      val_extras: optional function (y_true (N,), y_pred (N,)) -> dict of extra
        validation figures logged next to accuracy (pre-training's family accuracy).
      init_classifier: optional keras Model whose matching weights start the
        classifier (`--init`); a callback `report(loaded, skipped)` prints what happened.
    """

    def __init__(self, config, class_names, run, strategy, train_dataset, val_dataset=None,
                 init_weights=None, out=None, val_extras=None):
        self.config = config
        self.class_names = list(class_names)
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.strategy = strategy
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset
        self.val_extras = val_extras
        self.out = out or sys.stdout
        self.chief = is_chief()
        self.use_patches = config.mode == "dnadet"
        keras.utils.set_random_seed(config.seed)  # initial weights and dropout masks follow the run's seed
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            backbone = Backbone(config.width, synchronized_bn=replicas > 1, dtype=config.precision)
            self.classifier = Classifier(backbone, len(class_names), config.dropout, self.class_names,
                                         config.preprocess)
            self.train_model = keras.Model(self.classifier.input, [backbone.output, self.classifier.output])
            model_variables = list(self.classifier.trainable_variables)
            self.projector = None
            self.loss_weights = None
            if self.use_patches:
                self.projector = build_projection_head(backbone.feature_dim, dtype=config.precision)
                self.loss_weights = AutomaticWeightedLoss(2, name="loss_weights", dtype="float32")
                model_variables += self.projector.trainable_variables
            schedule = keras.optimizers.schedules.ExponentialDecay(
                config.learning_rate, config.lr_decay_every, config.lr_decay, staircase=True
            )
            self.optimizer = keras.optimizers.Adam(schedule)
            if config.precision == "mixed_float16":
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(model_variables)
            self.weight_optimizer = keras.optimizers.Adam(config.loss_weight_learning_rate)
            if self.loss_weights is not None:
                self.weight_optimizer.build(self.loss_weights.trainable_variables)
        self.model_variables = model_variables
        self.best_metric = tf.Variable(-math.inf, dtype=tf.float64, trainable=False, name="best_metric")
        self.best_nll = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_nll")
        # Early stopping watches the metric and the validation cross-entropy, whatever the selection rule.
        self.top_metric = tf.Variable(-math.inf, dtype=tf.float64, trainable=False, name="top_metric")
        self.low_nll = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="low_nll")
        self.evals_since_best = tf.Variable(0, dtype=tf.int64, trainable=False, name="evals_since_best")
        self.skipped_files = 0
        if init_weights is not None:
            init_weights(self.classifier)
        tracked = dict(classifier=self.classifier, optimizer=self.optimizer,
                       best_metric=self.best_metric, evals_since_best=self.evals_since_best,
                       best_nll=self.best_nll, top_metric=self.top_metric, low_nll=self.low_nll)
        # Dropout's random state is not part of Keras' own checkpoint graph; track it so that a
        # resumed run draws the same masks as an uninterrupted one.
        tracked["seed_states"] = {
            f"state_{i}": v.value for i, v in enumerate(self.classifier.variables) if "seed_generator" in v.path
        }
        if self.use_patches:
            tracked.update(projector=self.projector, loss_weights=self.loss_weights,
                           weight_optimizer=self.weight_optimizer)
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = self.run.checkpoint_manager(self.checkpoint, chief=self.chief)
        self._step_fn = tf.function(self._distributed_step, jit_compile=config.jit or None)
        self._predict_fn = tf.function(lambda x: classifier_probabilities(self.classifier, x))

    # ----------------------------------------------------------------- state
    @property
    def step(self):
        """Training steps done so far (the optimizer's iteration counter)."""
        return int(self.optimizer.iterations.numpy())

    def restore_latest(self):
        """Restores the latest checkpoint; returns its path or None."""
        path = self.manager.latest_checkpoint
        if path:
            self.checkpoint.restore(path).expect_partial()
        return path

    # ------------------------------------------------------------------ step
    def _replica_step(self, images, labels):
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        if self.use_patches:
            patch = self.config.patch_size
            count = self.config.patches_per_image
            images = tf.reshape(images, (-1, patch, patch, 3))
            labels = tf.repeat(labels, count)
        labels = tf.cast(labels, tf.int32)
        global_count = tf.cast(tf.shape(labels)[0] * replicas, tf.float32)
        with tf.GradientTape() as tape:
            feature, logits = self.train_model(images, training=True)
            logits = tf.cast(logits, tf.float32)
            cross_entropy = tf.reduce_sum(
                classification_cross_entropy(labels, logits, self.config.ce_input)
            ) / global_count
            if self.use_patches:
                embedding = self.projector(feature, training=True)
                all_embeddings = context.all_gather(embedding, axis=0)
                all_labels = context.all_gather(labels, axis=0)
                contrastive = tf.reduce_mean(
                    supervised_contrastive_loss(
                        all_embeddings, all_labels, self.config.temperature, self.config.base_temperature
                    )
                ) / replicas
                total = self.loss_weights([cross_entropy, contrastive], replicas=replicas)
            else:
                contrastive = tf.constant(0.0)
                total = cross_entropy
            scaled = self.optimizer.scale_loss(total) if hasattr(self.optimizer, "scale_loss") else total
        variables = self.model_variables + (self.loss_weights.trainable_variables if self.loss_weights else [])
        gradients = tape.gradient(scaled, variables)
        n_model = len(self.model_variables)
        self.optimizer.apply_gradients(zip(gradients[:n_model], self.model_variables))
        if self.loss_weights is not None:
            weight_gradients = gradients[n_model:]
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                scale = tf.cast(self.optimizer.dynamic_scale, tf.float32)
                weight_gradients = [g / scale for g in weight_gradients]
            self.weight_optimizer.apply_gradients(zip(weight_gradients, self.loss_weights.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32))
        return total, cross_entropy, contrastive, correct, tf.cast(tf.shape(labels)[0], tf.float32)

    def _distributed_step(self, batch):
        images, labels = batch
        results = self.strategy.run(self._replica_step, args=(images, labels))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in results]

    # -------------------------------------------------------------- validate
    def validate(self):
        """Whole-image metrics on the validation data (dict), or None without it.

        Adds `nll`, the mean cross-entropy of the true class's probability, and
        whatever `val_extras` returns.
        """
        if self.val_dataset is None:
            return None
        y_true, probabilities = [], []
        for pixels, labels in self.val_dataset():
            probabilities.append(self._predict_fn(pixels).numpy())
            y_true.append(labels.numpy())
        y_true, probabilities = np.concatenate(y_true), np.concatenate(probabilities)
        y_pred = np.argmax(probabilities, axis=-1)
        metrics = classification_metrics(y_true, y_pred, self.class_names)
        true_probability = probabilities[np.arange(len(y_true)), y_true.astype(np.int64)]
        metrics["nll"] = float(-np.mean(np.log(np.maximum(true_probability, 1e-12))))
        if self.val_extras is not None:
            metrics.update(self.val_extras(y_true, y_pred))
        return metrics

    # ------------------------------------------------------------------ loop
    def _print(self, text):
        if self.chief:
            print(text, file=self.out, flush=True)

    def _save_best(self, metrics, step):
        """Keeps the model when the selection rule prefers it; counts validations for early stopping.

        Returns True when best.keras was replaced.
        """
        value, nll = metrics[self.config.metric], metrics["nll"]
        progressed = round(value, 4) > round(float(self.top_metric.numpy()), 4) or nll < float(self.low_nll.numpy())
        self.top_metric.assign(max(value, float(self.top_metric.numpy())))
        self.low_nll.assign(min(nll, float(self.low_nll.numpy())))
        self.evals_since_best.assign(0 if progressed else self.evals_since_best + 1)
        if self.chief and self.config.keep_validated:
            self.run.save_validated(self.classifier, step)
        if is_better(self.config.select, value, nll, float(self.best_metric.numpy()), float(self.best_nll.numpy())):
            self.best_metric.assign(value)
            self.best_nll.assign(nll)
            if self.chief:
                self.run.save_best(self.classifier)
            return True
        return False

    def fit(self, steps=None):
        """Trains until `steps` (default config.steps) or early stopping.

        Returns a summary dict: steps, best metric, stopped_early, seconds.
        """
        config = self.config
        target = steps or config.steps
        start = self.step
        summary = {"start_step": start, "target_steps": target, "stopped_early": False}
        writer = self.run.tensorboard_writer() if self.chief else None
        patches_per_sample = config.patches_per_image if self.use_patches else 1
        began = time.time()
        if start >= target:
            self._print(f"already at step {start} of {target}; nothing to train.")
        else:
            dataset = self.strategy.experimental_distribute_dataset(self.train_dataset(start))
            iterator = iter(dataset)
            totals = np.zeros(5)
            window_steps = 0
            window_start = time.time()
            for step in range(start + 1, target + 1):
                values = self._step_fn(next(iterator))
                totals += np.array([float(v) for v in values])
                window_steps += 1
                if step % config.log_every == 0 or step == target:
                    seconds = max(time.time() - window_start, 1e-9)
                    record = self._log_line(step, target, totals, window_steps, seconds, patches_per_sample,
                                            eta=(time.time() - began) / (step - start) * (target - step))
                    if writer:
                        with writer.as_default(step=step):
                            for key in ("loss", "cross_entropy", "contrastive", "accuracy", "learning_rate", "patches_per_s"):
                                tf.summary.scalar(f"train/{key}", record[key])
                    if self.chief:
                        self.run.log({"kind": "train", **record})
                    totals[:] = 0
                    window_steps = 0
                    window_start = time.time()
                if step % config.val_every == 0 or step == target:
                    if self._validate_and_keep(step, writer):
                        summary["stopped_early"] = True
                if step % config.checkpoint_every == 0 or step == target or summary["stopped_early"]:
                    self.manager.save(checkpoint_number=step)
                if summary["stopped_early"]:
                    self._print(
                        f"early stop at step {step}: no better validation {config.metric} or cross-entropy "
                        f"in {config.patience} validations."
                    )
                    break
        if self.val_dataset is None and self.chief:
            self.run.save_best(self.classifier)
        if writer:
            writer.flush()
        summary.update(end_step=self.step, best_metric=float(self.best_metric.numpy()),
                       metric=config.metric, seconds=round(time.time() - began, 1))
        return summary

    def _log_line(self, step, target, totals, steps_in_window, seconds, patches_per_sample, eta=0.0):
        loss, ce, con, correct, count = totals
        steps_in_window = max(steps_in_window, 1)
        learning_rate = float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))
        record = {
            "step": step,
            "loss": loss / steps_in_window,
            "cross_entropy": ce / steps_in_window,
            "contrastive": con / steps_in_window,
            "accuracy": correct / max(count, 1),
            "learning_rate": learning_rate,
            "patches_per_s": count / seconds,
        }
        if self.loss_weights is not None:
            record["loss_weight_params"] = [float(v) for v in self.loss_weights.params.numpy()]
        unit = "patches/s" if patches_per_sample > 1 else "images/s"
        done = step / max(target, 1)
        bar = "#" * int(done * 20)
        self._print(
            f"[{bar:<20}] step {step}/{target}  eta {int(eta) // 60}m{int(eta) % 60:02d}s  loss {record['loss']:.4f}  ce {record['cross_entropy']:.4f}"
            + (f"  con {record['contrastive']:.4f}" if self.use_patches else "")
            + f"  acc {record['accuracy']:.3f}  lr {learning_rate:.2e}  {record['patches_per_s']:.0f} {unit}"
        )
        return record

    def _validate_and_keep(self, step, writer):
        """Validates, keeps the best model; returns True when early stopping is due."""
        metrics = self.validate()
        if metrics is None:
            return False
        improved = self._save_best(metrics, step)
        record = {"kind": "val", "step": step,
                  **{k: v for k, v in metrics.items() if k not in ("per_class_recall", "confusion_matrix")}}
        if self.chief:
            self.run.log(record)
        if writer:
            with writer.as_default(step=step):
                for key, value in record.items():
                    if key not in ("kind", "step", "num_images"):
                        tf.summary.scalar(f"val/{key}", value)
        extras = "".join(f"  {key} {metrics[key]:.4f}" for key in sorted(metrics)
                         if key.startswith("family_"))
        self._print(
            f"  validation at step {step}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}"
            f"  cross-entropy {metrics['nll']:.4f}{extras}"
            + (f"  (kept as best.keras, rule '{self.config.select}')" if improved else "")
        )
        return int(self.evals_since_best.numpy()) >= self.config.patience
