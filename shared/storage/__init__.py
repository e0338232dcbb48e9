"""Storage: the MySQL (or SQLite) history of bars and predictions, and archiving into it.

The history store (:mod:`.history`) and the archive use case that upserts the predictions
hub's events (:mod:`.archiving`). May import :mod:`shared.contracts` and :mod:`shared.settings`.
"""
