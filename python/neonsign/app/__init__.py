"""The application layer: serving, the pipeline, gate, registry and retraining, built on the library (neonsign.data, .engine, .train, ...); the library never imports it."""
