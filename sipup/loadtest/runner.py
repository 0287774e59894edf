"""Runs a scenario in one of two workload models and returns what was measured.

Closed model (`--users N`): N virtual users, each a thread with its own keep-alive connection, run
tasks one after another with think time between; users start spread over the ramp-up. Its throughput
follows the server's speed, and a slow answer delays the next request (what a closed model is).

Open model (`--rate R`): arrivals at a constant R tasks per second on a fixed schedule, whatever the
server does, served by `--users` virtual users, all started (and signed in) before the schedule begins.
Each class of users (`Scenario.arrival_class`: the storefront's visitors and buyers) serves its share of the
arrivals, whatever the server does: a class whose tasks are quicker does not take the others' arrivals when
the server slows down, so the mix stays the same at every rate.
Latency counts from when each request should have been sent, so a stalled server or generator shows
up in the figures instead of being hidden (coordinated omission). Starts more than `late_after` behind
the schedule are counted as late; more than `drop_after` behind, they are dropped and counted.
"""

import itertools
import math
import os
import threading
import time
from dataclasses import dataclass, field

from .http import Session
from .scenarios import ScenarioError
from .stats import Recorder, Result


class StopRun(Exception):
    """The run's request budget is spent."""


@dataclass
class RunOptions:
    url: str
    scenario: type
    scenario_options: object
    users: int = 10
    rate: float = None  # set: open model
    duration: float = 30.0
    warmup: float = 0.0
    ramp_up: float = 0.0
    timeout: float = 10.0
    max_requests: int = 1_000_000
    late_after: float = 0.010
    drop_after: float = 1.0

    @property
    def model(self):
        return "open" if self.rate else "closed"


@dataclass
class Clock:
    start: float
    measure_from: float
    end: float


@dataclass
class RunOutcome:
    options: RunOptions
    result: Result
    started_at: float  # time.time() at start
    window: float  # seconds measured (after the warm-up)
    cpu_seconds: float  # the generator's own CPU time within the window
    cpu_series: list = field(default_factory=list)  # (second, percent of one core)
    interrupted: bool = False
    budget_spent: bool = False
    setup_errors: list = field(default_factory=list)
    expected_arrivals: int = 0  # open model: arrivals the schedule held within the measured window
    connections: int = 0  # TCP connections opened by all users (keep-alive: about one per user)


def cpu_time():
    """This process's user + system CPU seconds (os.times works on Windows and Linux)."""
    times = os.times()
    return times.user + times.system


class Runner:
    """One run: start the virtual users, watch the clock and the budget, report progress, collect."""

    def __init__(self, options, progress=None):
        self.options = options
        self.progress = progress
        self.recorders = []
        self.stop = threading.Event()
        self.threads = []
        self.lock = threading.Lock()
        self.budget = itertools.count()
        self.budget_spent = False
        self.starting = 0
        self.go = threading.Event()
        self.errors = []
        self.classes = {}  # open model: arrival class -> numbers of its users
        self.places = {}  # open model: arrival class -> its users' places in each round of the schedule
        self.rounds = 0  # open model: users in a round of the schedule
        self.claimed = {}  # open model: arrival class -> arrivals it has claimed
        self.sessions = []

    # --- shared by both models ---------------------------------------------------------------

    def _recorder(self):
        recorder = Recorder(self.clock, self.options.late_after)
        with self.lock:
            self.recorders.append(recorder)
        return recorder

    def _spend_budget(self):
        """Called before every request: the run stops exactly at --max-requests."""
        if next(self.budget) >= self.options.max_requests:
            self.budget_spent = True
            self.stop.set()
            raise StopRun

    def _session(self, recorder):
        session = Session(self.options.url, recorder, timeout=self.options.timeout, before_request=self._spend_budget)
        with self.lock:
            self.sessions.append(session)
        return session

    def _user(self, number, recorder):
        session = self._session(recorder)
        return session, self.options.scenario(session, recorder, number, self.options.scenario_options)

    def _guard(self, body):
        """Run a virtual user's body; a scenario's own bug stops that user and is reported, not hidden."""
        try:
            body()
        except StopRun:
            pass
        except ScenarioError as exc:
            self._error(str(exc))
        except Exception as exc:  # a bug in a (developer's) scenario: that user stops, the others run on
            self._error(f"{type(exc).__name__} in the scenario stopped a user: {exc}")

    def _error(self, message):
        with self.lock:
            if message not in self.errors:  # once, not once per user
                self.errors.append(message)

    # --- closed model --------------------------------------------------------------------------

    def _closed_user(self, number):
        recorder = self._recorder()
        options = self.options
        delay = self.clock.start + options.ramp_up * number / options.users - time.perf_counter()
        if delay > 0 and self.stop.wait(delay):
            return
        session, scenario = self._user(number, recorder)
        try:
            scenario.on_start()
            while not self.stop.is_set():
                scenario.run_task()
                pause = scenario.think()
                if pause > 0 and self.stop.wait(pause):
                    break
        finally:
            session.close()

    # --- open model ----------------------------------------------------------------------------

    def _share_arrivals(self):
        """Give each class of users the arrivals at its users' places in every round of the schedule (a round
        has an arrival per user): with users of every class spread over the numbers, its arrivals are too."""
        with self.lock:
            users = sorted(number for numbers in self.classes.values() for number in numbers)
            place = {number: index for index, number in enumerate(users)}
            self.rounds = len(users)
            self.places = {kind: sorted(place[n] for n in numbers) for kind, numbers in self.classes.items()}
            self.claimed = dict.fromkeys(self.places, 0)

    def _claim(self, kind):
        """The intended start of the next arrival of this class of users, or None when the schedule is over."""
        with self.lock:
            places = self.places.get(kind)
            if not places:  # no user of its class had started when the schedule began: the others serve it all
                return None
            claimed = self.claimed[kind]
            self.claimed[kind] = claimed + 1
        slot = claimed // len(places) * self.rounds + places[claimed % len(places)]
        intended = self.clock.start + slot / self.options.rate
        return None if intended >= self.clock.end or self.stop.is_set() else intended

    def _open_user(self, number):
        recorder = self._recorder()
        session, scenario = self._user(number, recorder)
        with self.lock:
            self.classes.setdefault(scenario.arrival_class, []).append(number)
        try:
            try:
                scenario.on_start()
            finally:
                with self.lock:
                    self.starting -= 1
            self.go.wait()
            while True:
                intended = self._claim(scenario.arrival_class)
                if intended is None:
                    break
                now = time.perf_counter()
                if now < intended:
                    if self.stop.wait(intended - now):
                        break
                counted = intended >= self.clock.measure_from
                if now - intended > self.options.drop_after:
                    if counted:
                        recorder.count_schedule(dropped=True)
                    continue
                if counted:
                    recorder.count_schedule()
                session.pending_start = intended
                scenario.run_task()
                session.pending_start = None
        finally:
            session.close()

    def _spawn(self, target, number):
        thread = threading.Thread(
            target=self._guard, args=(lambda: target(number),), daemon=True, name=f"loadtest-user-{number}"
        )
        self.threads.append(thread)
        thread.start()

    # --- the run -------------------------------------------------------------------------------

    def run(self):
        """Start the users, watch the clock until the end (or Ctrl+C, or the budget), and collect."""
        self._start()
        started_at = time.time()
        interrupted = False
        try:
            cpu_seconds, cpu_series = self._watch()
        except KeyboardInterrupt:
            interrupted, cpu_seconds, cpu_series = True, cpu_time() - self._cpu_at_start, []
        ended = min(time.perf_counter(), self.clock.end)
        self.stop.set()
        self.go.set()
        self._join()
        return RunOutcome(
            options=self.options,
            result=Result(list(self.recorders)),
            started_at=started_at,
            window=max(ended - self.clock.measure_from, 1e-9),
            cpu_seconds=cpu_seconds,
            cpu_series=cpu_series,
            interrupted=interrupted,
            budget_spent=self.budget_spent,
            setup_errors=list(self.errors),
            expected_arrivals=self._expected(ended),
            connections=sum(session.connection.opened for session in self.sessions),
        )

    def _start(self):
        options = self.options
        if options.model == "open":
            self.clock = Clock(math.inf, math.inf, math.inf)  # users sign in now: none of it is measured
            try:
                self._start_open_users()
            except KeyboardInterrupt:
                self.stop.set()
                self.go.set()
                raise
        now = time.perf_counter()
        if options.model == "open":
            self._share_arrivals()
            self.clock.start, self.clock.measure_from, self.clock.end = (
                now,
                now + options.warmup,
                now + options.duration,
            )
            self.go.set()
        else:
            self.clock = Clock(now, now + options.warmup, now + options.duration)
            for number in range(options.users):
                self._spawn(self._closed_user, number)
        self._cpu_at_start = cpu_time()

    def _watch(self):
        """Wait for the end, sampling the generator's CPU each second and reporting progress.

        Returns (CPU seconds used after the warm-up, [(second, percent of one core)])."""
        cpu_at_measure, series = None, []
        last_cpu, last_wall = self._cpu_at_start, self.clock.start
        next_tick = self.clock.start + 1.0
        while not self.stop.is_set():
            now = time.perf_counter()
            if now >= self.clock.end:
                break
            if cpu_at_measure is None and now >= self.clock.measure_from:
                cpu_at_measure = cpu_time()
            if now >= next_tick:
                cpu = cpu_time()
                second = round(now - self.clock.measure_from)
                if second >= 0:
                    series.append((second, 100 * (cpu - last_cpu) / (now - last_wall)))
                last_cpu, last_wall, next_tick = cpu, now, next_tick + 1.0
                if self.progress:
                    self.progress(self, now)
            self.stop.wait(0.05)
        return cpu_time() - (self._cpu_at_start if cpu_at_measure is None else cpu_at_measure), series

    def _expected(self, ended):
        if self.options.model != "open":
            return 0
        rate, start = self.options.rate, self.clock.start
        return max(0, math.ceil((ended - start) * rate) - math.ceil((self.clock.measure_from - start) * rate))

    def _start_open_users(self):
        """Start every open-model user and let each sign in before the schedule starts, so that set-up
        traffic (sign-in is slow on purpose) does not fall into the measured run."""
        self.starting = self.options.users
        for number in range(self.options.users):
            self._spawn(self._open_user, number)
        deadline = time.perf_counter() + self.options.timeout + 30
        while self.starting > 0 and time.perf_counter() < deadline:
            time.sleep(0.01)

    def _join(self):
        deadline = time.perf_counter() + self.options.timeout + 2
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.perf_counter()))

    def snapshot(self):
        """(requests, failures) so far, warm-up included, for the progress line; reads the other threads'
        counters while they run (plain ints and dict copies, safe under the GIL)."""
        requests = failures = 0
        for recorder in list(self.recorders):
            requests += recorder.requests + recorder.warmup_requests
            failures += recorder.failures
        return requests, failures
