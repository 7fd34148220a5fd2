"""The closed loop (闭环): the services that turn shared data into duties and answers.

- ``config``: province rules as data (category ranking, benefit dates, thresholds, deadlines).
- ``relief``: the effective relief status of a person on a date.
- ``warnings``: the monthly high-cost warning run, its pushes and tasks.
- ``tasks``: tasks pushed to departments, their deadlines in working days, and answers.
- ``chain``: a person's relief chain across departments.
- ``coverage`` and ``statistics``: aggregate figures with small cells suppressed.

Services with no HTTP in them: may import ``adapters`` (the feed definitions), ``storage``,
``crypto`` and ``domain``; never ``schema``, ``authz`` or the shells. They report through
``gateway.domain.observers``.
"""
