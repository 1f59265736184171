"""Supplier adapters behind one small interface, the error taxonomy, and the simulator."""
