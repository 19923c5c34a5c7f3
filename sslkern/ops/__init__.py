"""torch.library registrations: one module per op family, each holding its custom ops
(namespace `sslkern`), their fake (meta) implementations and their autograd.

The ops take the backend's *requested* name as a string argument and resolve it when they
run, on concrete tensors, so torch.compile traces them as opaque nodes without graph breaks.
Importing this package registers everything; the public, validating wrappers live in
sslkern/functional.py.
"""
from . import autoencoder, contractive, corrupt, linear, pretext, random  # noqa: F401  (registers the ops)
