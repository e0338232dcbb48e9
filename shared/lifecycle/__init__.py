"""Lifecycle: where models live and how a challenger becomes the champion.

The model registry on Blob Storage (:mod:`.registry`), the champion source that serves and
hot-reloads models (:mod:`.champions`), the retrain use case (:mod:`.retrain`) and the
promotion decision (:mod:`.promotion`). May import :mod:`shared.storage`,
:mod:`shared.forecast`, :mod:`shared.stream`, :mod:`shared.contracts` and :mod:`shared.settings`.
"""
