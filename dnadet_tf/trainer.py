"""The one training loop, shared by transformation pre-training and
architecture classification: a GradientTape step in a tf.function under a
tf.distribute strategy, indexed by the optimizer's step counter (so a resumed
run continues exactly), with everything around the step done by callbacks
(`callbacks.py`: progress line, JSONL log, TensorBoard, best model, early
stopping, checkpoints).

The two steps differ only by their data (a `train_dataset(start_step)`
function and a validation dataset) and their number of classes.
"""
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from dnadet_tf.callbacks import default_callbacks
from dnadet_tf.distribute import is_chief
from dnadet_tf.errors import DnadetError, first_line
from dnadet_tf.config import ALIGN_FIRST_STAGE, ENCODER_STAGES
from dnadet_tf.losses import (AutomaticWeightedLoss, alignment_of_statistics, classification_cross_entropy,
                              image_statistics, supervised_contrastive_loss)
from dnadet_tf.metrics import classification_metrics
from dnadet_tf.model import (Backbone, Classifier, build_projection_head, freeze_stages,
                             probabilities as classifier_probabilities)
from dnadet_tf.runs import RunDir


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
      init_weights: optional function (classifier) that loads starting weights into it (`--init`).
      output: stream for the progress lines (default stdout); paths are the `RunDir`'s.
      callbacks: what the loop does around its step (default `callbacks.default_callbacks(config)`).
    """

    def __init__(self, config, class_names, run, strategy, train_dataset, val_dataset=None,
                 init_weights=None, output=None, val_extras=None, callbacks=None):
        self.config = config
        self.class_names = list(class_names)
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.strategy = strategy
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset
        self.val_extras = val_extras
        self.output = output or sys.stdout
        self.chief = is_chief(strategy)  # a leftover TF_CONFIG counts under MultiWorkerMirroredStrategy only
        self.use_patches = config.model.mode == "dnadet"
        keras.utils.set_random_seed(config.runtime.seed)  # initial weights and dropout masks follow the run's seed
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            backbone = Backbone(config.model.width, synchronized_bn=replicas > 1, dtype=config.runtime.precision,
                                zero_mean_stem=config.model.zero_mean_stem,
                                statistics_shift=config.model.statistics_shift)
            self.classifier = Classifier(backbone, len(class_names), config.model.dropout, self.class_names,
                                         config.preprocess)
            freeze_stages(self.classifier, config.optimizer.frozen_stages)
            outputs = [backbone.output, self.classifier.output]
            self.align_weight = float(config.optimizer.content_align)
            if self.align_weight:  # the convolutions' outputs, as the BatchNorms that follow them see them
                outputs += [self.classifier.get_layer(f"stage{stage}_conv{index}").output
                            for stage in range(ALIGN_FIRST_STAGE, ENCODER_STAGES + 1) for index in (1, 2)]
            self.train_model = keras.Model(self.classifier.input, outputs)
            model_variables = list(self.classifier.trainable_variables)
            self.projector = None
            self.loss_weights = None
            if self.use_patches:
                self.projector = build_projection_head(backbone.feature_dim, dtype=config.runtime.precision)
                self.loss_weights = AutomaticWeightedLoss(2, name="loss_weights", dtype="float32")
                model_variables += self.projector.trainable_variables
            schedule = keras.optimizers.schedules.ExponentialDecay(
                config.optimizer.learning_rate, config.optimizer.lr_decay_every, config.optimizer.lr_decay, staircase=True
            )
            self.optimizer = keras.optimizers.Adam(schedule)
            if config.runtime.precision == "mixed_float16":
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(model_variables)
            # The loop's steps: the optimizer's iterations skip a step the loss scaler of mixed_float16 drops
            self.steps_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps_done",
                                          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.weight_optimizer = keras.optimizers.Adam(config.optimizer.loss_weight_learning_rate)
            if self.loss_weights is not None:
                self.weight_optimizer.build(self.loss_weights.trainable_variables)
        self.model_variables = model_variables
        self.callbacks = default_callbacks(config) if callbacks is None else list(callbacks)
        if init_weights is not None:
            init_weights(self.classifier)
        tracked = dict(classifier=self.classifier, optimizer=self.optimizer, steps_done=self.steps_done)
        for callback in self.callbacks:
            callback.build(self)
            tracked.update(callback.state)
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
        self._step_fn = tf.function(self._distributed_step, jit_compile=config.runtime.jit or None)
        self._predict_fn = tf.function(lambda x: classifier_probabilities(self.classifier, x))

    # ----------------------------------------------------------------- state
    @property
    def step(self):
        """Training steps done so far (the loop's own counter, checkpointed: the optimizer's iterations leave out
        the steps mixed_float16's loss scaler skipped)."""
        return int(self.steps_done.numpy())

    def restore_latest(self):
        """Restores the newest checkpoint that can be read; returns its path, or None when there is none.

        One that cannot be read (a file cut short by a full disk or a kill while copying) is named in a
        warning line and the one before it is restored: training repeats the same steps from there, to the
        same weights. Raises DnadetError when none can be read."""
        unreadable = []
        paths = list(self.manager.checkpoints)  # oldest first; a state file without timestamps lists none
        if self.manager.latest_checkpoint and self.manager.latest_checkpoint not in paths:
            paths.append(self.manager.latest_checkpoint)
        for path in reversed(paths):
            try:
                self.checkpoint.restore(path).expect_partial()
            except (tf.errors.OpError, ValueError, IndexError, OSError) as error:
                unreadable.append(path)
                print(f"warning: checkpoint {path} cannot be read ({first_line(error)}); trying the one before it",
                      file=self.output, flush=True)
                continue
            if int(self.steps_done.numpy()) == 0:  # a checkpoint written before the loop counted its own steps
                self.steps_done.assign(tf.cast(self.optimizer.iterations, tf.int64))
            return path
        if unreadable:
            raise DnadetError(f"checkpoints {', '.join(unreadable)}: expected a checkpoint that can be read, received "
                              f"none; remove the run dir's checkpoints/ folder to train from step 0, or pass "
                              f"overwrite=True.")
        return None

    # ------------------------------------------------------------------ step
    def _replica_step(self, images, labels, other_content=None):
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        if self.use_patches:
            patch = self.config.sampling.patch_size
            count = self.config.sampling.patches_per_image
            images = tf.reshape(images, (-1, patch, patch, 3))
            labels = tf.repeat(labels, count)
            if other_content is not None:
                other_content = tf.repeat(other_content, count)
        labels = tf.cast(labels, tf.int32)
        # every replica's images together (a global batch need not split evenly)
        global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(tf.shape(labels)[0], tf.float32))
        with tf.GradientTape() as tape:
            feature, logits, *activations = self.train_model(images, training=True)
            logits = tf.cast(logits, tf.float32)
            cross_entropy = tf.reduce_sum(
                classification_cross_entropy(labels, logits, self.config.optimizer.ce_input)
            ) / global_count
            if self.use_patches:
                embedding = self.projector(feature, training=True)
                all_embeddings = context.all_gather(embedding, axis=0)
                all_labels = context.all_gather(labels, axis=0)
                contrastive = tf.reduce_mean(
                    supervised_contrastive_loss(
                        all_embeddings, all_labels, self.config.optimizer.temperature, self.config.optimizer.base_temperature
                    )
                ) / replicas
                total = self.loss_weights([cross_entropy, contrastive], replicas=replicas)
            else:
                contrastive = tf.constant(0.0)
                total = cross_entropy
            alignment = tf.constant(0.0)
            if self.align_weight:  # over every replica's images: each replica's statistics gathered, as one batch
                statistics, all_labels, all_content = image_statistics(activations), labels, other_content
                if replicas > 1:
                    statistics = [tuple(context.all_gather(value, axis=0) for value in pair) for pair in statistics]
                    all_labels = context.all_gather(labels, axis=0)
                    all_content = tf.cast(context.all_gather(tf.cast(other_content, tf.int32), axis=0), tf.bool)
                # the crops carry the real class's label (add_extra_real chose it): its other images are the
                # training content's (none when the batch holds no crop, and then the loss is 0 anyway)
                crop_label = tf.reduce_max(tf.where(all_content, all_labels, -1))
                in_content = tf.equal(all_labels, crop_label) & tf.logical_not(all_content)
                alignment = alignment_of_statistics(statistics, in_content, all_content) / replicas
                total = total + self.align_weight * alignment
            scaled = self.optimizer.scale_loss(total) if hasattr(self.optimizer, "scale_loss") else total
        variables = self.model_variables + (self.loss_weights.trainable_variables if self.loss_weights else [])
        gradients = tape.gradient(scaled, variables)
        n_model = len(self.model_variables)
        loss_scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        if loss_scaled:  # read before the step, which may double or halve the scale
            scale = tf.cast(self.optimizer.dynamic_scale, tf.float32)
            finite = self.optimizer.check_finite(gradients)
        self.optimizer.apply_gradients(zip(gradients[:n_model], self.model_variables))
        if self.loss_weights is not None:
            weight_gradients = gradients[n_model:]
            if loss_scaled:
                weight_gradients = [g / scale for g in weight_gradients]

            def apply_weights():
                self.weight_optimizer.apply_gradients(zip(weight_gradients, self.loss_weights.trainable_variables))

            if loss_scaled:  # a step the scaler skips (gradients not finite) moves no loss weight either
                tf.cond(finite, apply_weights, lambda: None)
            else:
                apply_weights()
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32))
        return total, cross_entropy, contrastive, alignment, correct, tf.cast(tf.shape(labels)[0], tf.float32)

    def _distributed_step(self, batch):
        """One step on a batch (images, labels[, other_content]) -> the summed (total, cross-entropy,
        contrastive, alignment, correct, count) of every replica."""
        results = self.strategy.run(self._replica_step, args=tuple(batch))
        self.steps_done.assign_add(1)
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in results]

    # -------------------------------------------------------------- validate
    def validation_due(self, step):
        """Whether the loop validates after `step`: every `val_every` steps, and after the last one."""
        return step % self.config.loop.val_every == 0 or step == self.target

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
    def print(self, text):
        """Prints one line on the chief."""
        if self.chief:
            print(text, file=self.output, flush=True)

    def fit(self, steps=None):
        """Trains until `steps` (default config.loop.steps) or until a callback stops it.

        Returns a summary dict: start_step, target_steps, end_step, stopped_early,
        best_metric, metric, seconds.
        """
        config = self.config
        self.target = steps or config.loop.steps
        self.start_step = self.step
        self.began = time.time()
        summary = {"start_step": self.start_step, "target_steps": self.target, "stopped_early": False}
        if self.start_step >= self.target:
            self.print(f"already at step {self.start_step} of {self.target}; nothing to train.")
        elif any(callback.stopped() for callback in self.callbacks):  # a resumed run that had stopped early
            self.print(f"stopped early at step {self.start_step} before this resume; nothing to train.")
            summary["stopped_early"] = True
        else:
            iterator = iter(self.strategy.experimental_distribute_dataset(self.train_dataset(self.start_step)))
            window = np.zeros(6)  # sums of loss, cross-entropy, contrastive, alignment, correct, count
            window_steps, window_start = 0, time.time()
            for step in range(self.start_step + 1, self.target + 1):
                window += np.array([float(v) for v in self._step_fn(next(iterator))])
                window_steps += 1
                logs = {}
                if step % config.loop.log_every == 0 or step == self.target:
                    record = self._log_record(step, window, window_steps, max(time.time() - window_start, 1e-9))
                    for callback in self.callbacks:
                        callback.on_log(self, step, record)
                    window[:] = 0
                    window_steps, window_start = 0, time.time()
                if self.validation_due(step):
                    metrics = self.validate()
                    if metrics is not None:
                        logs["metrics"] = metrics
                        for callback in self.callbacks:
                            callback.on_validation(self, step, logs)
                for callback in self.callbacks:
                    callback.on_step_end(self, step, logs)
                if logs.get("stop"):
                    summary["stopped_early"] = True
                    break
        summary.update(end_step=self.step, metric=config.loop.metric, best_metric=-float("inf"))
        for callback in self.callbacks:
            callback.on_train_end(self, summary)
        summary["seconds"] = round(time.time() - self.began, 1)
        return summary

    def _log_record(self, step, totals, steps_in_window, seconds):
        """The metrics.jsonl record of a log window: mean losses, accuracy, learning rate, throughput."""
        loss, ce, con, alignment, correct, count = totals
        steps_in_window = max(steps_in_window, 1)
        record = {
            "step": step,
            "loss": loss / steps_in_window,
            "cross_entropy": ce / steps_in_window,
            "contrastive": con / steps_in_window,
            **({"content_alignment": alignment / steps_in_window} if self.align_weight else {}),
            "accuracy": correct / max(count, 1),
            "learning_rate": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
            "patches_per_s": count / seconds,
        }
        if self.loss_weights is not None:
            record["loss_weight_params"] = [float(v) for v in self.loss_weights.params.numpy()]
        return record
