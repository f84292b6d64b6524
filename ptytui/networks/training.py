"""One compiled Adam training loop shared by retraining and the demo's models.

``Model.fit`` is avoided on purpose: on a 2-core CPU its first-epoch tracing cost several seconds
more per model than one traced step with a batch dimension of None.
"""

from __future__ import annotations

import numpy as np

from ptytui.networks.architectures import _keras


def compiled_train_step(model, optimizer, loss_of, n_inputs: int, signature: list):
    """One Adam step as a ``tf.function`` over (inputs..., targets...): the first ``n_inputs``
    tensors feed the model, the rest are the targets ``loss_of(targets, predicted)`` compares.
    Shared by the scenario's training and the Baseline retraining."""
    layers, _ = _keras()
    tf = layers.tf

    @tf.function(input_signature=signature)
    def step(*tensors):
        model_inputs = list(tensors[:n_inputs])
        with tf.GradientTape() as tape:
            predicted = model(model_inputs if n_inputs > 1 else model_inputs[0], training=True)
            loss = loss_of(list(tensors[n_inputs:]), predicted)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step


def fit(model, loss_of, inputs: list[np.ndarray], targets: list[np.ndarray], *, epochs: int, batch_size: int,
         learning_rate: float, seed: int, progress=None) -> list[float]:
    """Minimal Adam training loop: one traced step with a batch dimension of None (no retracing
    for the last, smaller batch), seeded shuffling, mean loss per epoch.

    ``Model.fit`` is avoided on purpose: on a 2-core CPU its first-epoch tracing cost several
    seconds more per model, which the tiny preset's budget cannot afford.
    """
    layers, keras = _keras()
    tf = layers.tf
    keras.utils.set_random_seed(seed)
    optimizer = keras.optimizers.Adam(learning_rate)
    # Creating the optimizer's slots inside the traced step costs seconds of tracing; build first.
    optimizer.build(model.trainable_variables)
    n_inputs = len(inputs)
    arrays = [np.ascontiguousarray(a) for a in (*inputs, *targets)]
    signature = [tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)) for a in arrays]

    step = compiled_train_step(model, optimizer, loss_of, n_inputs, signature)

    rng = np.random.default_rng(seed)
    count = arrays[0].shape[0]
    history = []
    for epoch in range(epochs):
        order = rng.permutation(count)
        total, seen = 0.0, 0
        for start in range(0, count, batch_size):
            idx = np.sort(order[start : start + batch_size])
            loss = step(*[a[idx] for a in arrays])
            total += float(loss) * idx.size
            seen += idx.size
        history.append(total / max(seen, 1))
        if progress:
            progress(epoch + 1, epochs)
    return history
