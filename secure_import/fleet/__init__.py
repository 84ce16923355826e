"""Baked caches for images and air-gapped hosts: ``secure-import cache warm``,
``cache verify``, ``cache list`` and ``cache clear --repo``.

Layer: above :mod:`secure_import.repository` and :mod:`secure_import.hook`
(it drives repositories through the same code path as an import), below the
command line.
"""
