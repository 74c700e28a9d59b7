"""A discrete-event simulator of the overflow scheduler at fleet scale (issue 16).

python -m benchmarks.simulate                  # the default workloads and fleets, table + Pareto plots
python -m benchmarks.simulate.measure_engine   # this machine's engine profile (starts the real engine)
python -m benchmarks.simulate.sweep ...         # ours with other settings or engines, over seeds

events.py      the simulated clock and event heap
profiles.py    engine and remote-route profiles (profiles/*.json cite their figures)
engine.py      a vLLM replica: continuous batching, chunked prefill, decode runs as one event
stats.py       its load report: the real LoadTracker's figures, kept incrementally
request.py     one simulated request
workloads.py   arrival processes and request sizes
trace.py       the Azure LLM inference trace CSV, and a synthetic one (data/)
policies.py    the peer policies, one object per gateway
ours.py        our policy: the real Router and policy code
fleet.py       one deployment x workload x policy: board, gateways, engines, remotes
summary.py     per-run figures (TTFT percentiles, SLO attainment, local share, cost)
scenarios.py   the default fleets and workloads
validate.py    the burst benchmark's profile against its recorded real run
report.py      the table, the verdicts and the Pareto plots
sweep.py       our policy under other settings or on another engine
measure_engine.py  this machine's (or a GPU's) engine profile, from the real engine
"""
