"""The domain's words, at the bottom of the house: everything else may import them, they import
nothing of the gateway's other rooms (only each other).

- ``departments``: departments, levels, relief categories and their Chinese names.
- ``id_numbers``: 居民身份证号码 (GB 11643) validation, birth date and gender.
- ``regions``: GB/T 2260 region codes, jurisdictions.
- ``workdays``: working days with China's public holidays (deadlines are in working days).
- ``clock``: the one clock (``RELIEF_TODAY`` in development).
- ``errors``: the error types and the codes clients see.
- ``settings``: ``RELIEF_*`` configuration (no knowledge of HTTP or the database).
- ``records``: plain records of people, households and facts, as adapters and the seeder build
  them.
- ``principal``: the authenticated caller.
- ``observers``: how services report what they did (the shell registers the metrics).
- ``synthetic``: a synthetic population made of these words (demo, tests, benchmarks).
"""
