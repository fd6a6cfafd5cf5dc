"""The versioned contracts of every event that leaves a seatledger service.

This package stands alone: it imports nothing from the services, so a consumer in another team
can vendor or install it and validate what it reads from our topics.
"""
