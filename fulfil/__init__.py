"""fulfil: virtual-goods auto-fulfilment daemon."""
