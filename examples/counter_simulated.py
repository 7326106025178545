"""The counter under the deterministic simulator, with a Byzantine primary: replica 0 sends
different signed PRE-PREPAREs to different backups. The seed decides everything; the
checkers then judge the whole run (agreement, single votes, validity, exactly-once,
linearizability for any application, each correct replica's steps, liveness)."""

from examples.counter import Counter
from simulations import checkers
from simulations.byzantine import EquivocatingPrimary
from simulations.engine import Simulation

sim = Simulation(
    seed=7,
    app_factory=Counter,  # called once per replica (and again on a restart)
    clients=3,
    requests_per_client=20,
    # (client index, operation index) -> operation, or (operation, read-only?)
    make_operation=lambda client, i: (b"get", True) if i % 5 == 4 else b"add 1",
    behaviours={0: EquivocatingPrimary()},
)
finished = sim.run()
violations = [v for check in checkers.SAFETY_CHECKERS for v in check(sim)]
violations += checkers.liveness(sim, finished)

correct = sim.correct_replicas()
print(f"{sim.committed()} requests committed in {sim.now_us / 1e6:.2f} virtual s; "
      f"views now {sorted({sim.replicas[i].view for i in correct})}")
print("counter on the correct replicas:", {i: sim.apps[i].total for i in correct})
refused = sum(sim.replicas[i].dropped["conflicting_pre_prepare"] for i in correct)
print(f"conflicting PRE-PREPAREs refused by correct replicas: {refused}")
if violations:
    raise SystemExit(f"violations: {violations}")
print("safety and liveness held: every checker passed")
