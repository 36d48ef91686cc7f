"""The seed article's MNIST example with fastadapt's Python API (what
`fastadapt mnist` runs, in a dozen lines). Run: python examples/mnist.py"""

import fastadapt as fa

model = fa.models.MLP([784, 128, 10], seed=0)
X_train, y_train, X_test, y_test = fa.datasets.load_mnist()  # or load_mnist("dir/with/the/4/idx/files")
# Validation comes out of the training set, so the test set is only used once, at the end.
X_val, y_val, X_train, y_train = X_train[-400:], y_train[-400:], X_train[:-400], y_train[:-400]

trainer = fa.Trainer("adam", lr=1e-3, loss_and_grad=model.loss_and_grad, params=model.params,
                     loss_fn=model.loss, max_grad_norm=1.0,
                     callbacks=[fa.AdaptiveLR(warmup_epochs=3, patience=2),   # the article's scheduler
                                fa.EarlyStopping(patience=5),                 # restores the best params
                                fa.DiagnosisCallback()])                      # warns once per finding
history = trainer.fit(fa.batches(X_train, y_train, 32, shuffle=True, seed=0), epochs=20,
                      validation=(X_val, y_val), metrics={"accuracy": model.accuracy},
                      checkpoint_path="mnist_checkpoint.npz")  # resume: trainer.load_checkpoint(path); fit(...)

history.info["test_accuracy"] = model.accuracy(model.params, (X_test, y_test))
print(f"test accuracy: {history.info['test_accuracy']:.4f}")
history.save("history.json")
fa.plot_history(history, "history.png")
for finding in fa.diagnose(history):
    print(finding)
