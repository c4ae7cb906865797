"""neonsign's application layer: serving, pipelines, the quality gate, the registry and
retraining, built on the library (:mod:`neonsign.engine`, :mod:`neonsign.preprocess`,
:mod:`neonsign.artifacts`, ...).

The dependency points one way: modules here import the library, and the library never imports
``neonsign.app``. Optional dependencies (FastAPI, uvicorn, prometheus-client, MLflow) are
imported by the application module that needs them, when it needs them.
"""
