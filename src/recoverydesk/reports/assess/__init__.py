"""The assessment job (F18): a merchant's order export in, its recovery figures out.

``run_assessment(files, out=..., mapping=..., profile=...)`` reads CSV exports with polars
(lazily, every column as text, parsed per column), maps them to the desk's order model with a
built-in profile (Amazon, Shopify, NetSuite, DataCo, Olist, UCI Online Retail) or a mapping
file (format in ``profiles``), computes KPIS.md's figures per order and writes
``summary.json``, ``cases.csv``, ``report.html`` and a starter ``merchant.yaml``.
"""

from recoverydesk.reports.assess.job import Assessment, run_assessment

__all__ = ["Assessment", "run_assessment"]
