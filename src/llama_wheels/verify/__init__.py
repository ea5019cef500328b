"""Prove a built wheel works on a GPU, and judge it in one place.

- ``conformance``: llama.cpp's own op-level test (test-backend-ops, same source) linked against the
  installed wheel's libraries, run per GPU for the ops a model uses and for one model's graph ops;
- ``judge``: the one ``judge(evidence)`` that turns op-level runs, real-model agreement and the control
  into verdicts (smoke and numerics call it explicitly).

The teacher-forced measurements themselves (``agreement``, ``numerics``) and the smoke's order of
checks (``smoke``) call into this package.
"""
