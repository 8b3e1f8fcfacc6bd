"""The core every layer above builds on: config, tasks, data, model, store, checkpoints, metrics, the shared training
helpers and the method code both loops use (annealed loss, batch plans). It imports nothing above it."""
