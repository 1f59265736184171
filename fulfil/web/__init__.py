"""The daemon's HTTP faces beside the admin API: the operator console (`/console/`), the public storefront
figures (`/public/products/{sku}/figures`) and the Prometheus scrape (`/metrics`)."""

from __future__ import annotations

from fulfil.web.console import Console
from fulfil.web.figures import PublicFigures
from fulfil.web.metrics import metrics_text

__all__ = ["Console", "PublicFigures", "metrics_text"]
