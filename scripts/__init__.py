"""Repository scripts (asset generators, deploy checks) and the shared photo fixtures in photos.py.

A regular package so that tests/, bench/ and scripts/ import ``scripts.photos`` from the repository
root (pytest, ``python -m bench.engine``) without any of them importing ``tests``.
"""
