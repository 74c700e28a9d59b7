"""Caching: answers kept on local disk, and identical requests in flight shared.

cache.py         keys, policy, disk storage, replay as a real stream
singleflight.py  one upstream call for identical requests in flight
"""
