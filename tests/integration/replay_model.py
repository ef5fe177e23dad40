"""An independent model of sluice's five algorithms (SPEC.md section 3), written from the
specification in exact integer arithmetic on microseconds, for checking `sluice replay`
against counts computed without sluice's code."""
from collections import deque


class FixedWindow:
    def __init__(self, n, p, **_):
        self.n, self.p, self.state = n, p, {}

    def decide(self, key, t):
        k = t // self.p
        window, admitted = self.state.get(key, (k, 0))
        if k > window:
            window, admitted = k, 0
        if admitted < self.n:
            self.state[key] = (window, admitted + 1)
            return True, 0
        self.state[key] = (window, admitted)
        return False, 0


class SlidingWindow:
    """Admits while fewer than N were admitted in (t-P, t]."""

    def __init__(self, n, p, **_):
        self.n, self.p, self.state = n, p, {}

    def decide(self, key, t):
        log = self.state.setdefault(key, deque())
        while log and t - log[0] >= self.p:
            log.popleft()
        if len(log) < self.n:
            log.append(t)
            return True, 0
        return False, 0


class SlidingWindowCounter:
    """prev*(P-elapsed)/P + curr < N, compared as prev*(P-elapsed) + curr*P < N*P."""

    def __init__(self, n, p, **_):
        self.n, self.p, self.state = n, p, {}

    def decide(self, key, t):
        k, elapsed = divmod(t, self.p)
        window, prev, curr = self.state.get(key, (k, 0, 0))
        if k == window + 1:
            window, prev, curr = k, curr, 0
        elif k > window:
            window, prev, curr = k, 0, 0
        ok = prev * (self.p - elapsed) + curr * self.p < self.n * self.p
        if ok:
            curr += 1
        self.state[key] = (window, prev, curr)
        return ok, 0


class TokenBucket:
    """Holds at most `burst` tokens, refilled at N/P: GCRA with times scaled by N."""

    def __init__(self, n, p, burst, **_):
        self.n, self.p, self.cap, self.state = n, p, burst * p, {}

    def decide(self, key, t):
        now = t * self.n
        tat = max(self.state.get(key, 0), now)
        if tat - now + self.p <= self.cap:
            self.state[key] = tat + self.p
            return True, 0
        return False, 0


class LeakyBucket:
    """One departure every P/N; at most `burst` waiting; waits unless delay is false."""

    def __init__(self, n, p, burst, delay=True, **_):
        self.n, self.p, self.queue, self.delay, self.state = n, p, burst * p, delay, {}

    def decide(self, key, t):
        now = t * self.n
        departure = max(self.state.get(key, 0), now)
        wait = departure - now
        if wait <= self.queue:
            self.state[key] = departure + self.p
            return True, -(-wait // self.n) if self.delay else 0
        return False, 0


ALGORITHMS = {
    "fixed_window": FixedWindow,
    "sliding_window": SlidingWindow,
    "sliding_window_counter": SlidingWindowCounter,
    "token_bucket": TokenBucket,
    "leaky_bucket": LeakyBucket,
}
