"""Scheduling: which routes may serve a request, and in what order.

policy.py        the overflow policy, pure: `resolve` (rules, capabilities, context) and `order`
                 (data class, predicted local TTFT against the SLO, burst budget)
router.py        its I/O side: routing headers, token counts, load; the `RoutePlan` attempts report to
load.py          the load board (one Serve deployment) and each gateway's corrected view of it
calibration.py   the local TTFT prediction's learned error
capabilities.py  the served models and what each route can do
tokens.py        counting tokens with the local model's tokenizer
"""
