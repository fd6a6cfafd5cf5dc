"""Sub-commands of ``seatledger`` that belong to no single service."""
