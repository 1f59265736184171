"""The proving ground: real `fulfil run` daemons and real `fulfil sim` suppliers on loopback, faults in the
suppliers and (preset `net`) in the network between, kill -9s, PostgreSQL restarts and concurrent CLI writers;
then an audit of fulfil's records against the suppliers' own ledgers. `python -m chaos --help`."""
