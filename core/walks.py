"""Synthetic corpus: random walks on a seeded random directed graph.

Tokens are node ids 0..n_nodes-1, then BOS. Every walk obeys two things a
model must learn:

- edges: consecutive nodes are joined by an edge of the graph (a bigram fact);
- the rule: a class-A node opens a promise that the walk stands on a class-B
  node exactly `rule_k` steps later; while no promise is open, B is off limits
  (an A seen during an open promise opens nothing). Which successor is right
  depends on whether a promise is open and how many steps ago it opened, so the
  model has to count back through its context. A context-free policy fails:
  the most likely successor of each node (greedy bigram decoding) keeps the
  rule on a minority of promises.

Start nodes are split: training walks start at most nodes, validation and gate
walks start at the held-out ones. The gate generates greedily from the first
`prompt_len` tokens of held-out walks and scores what the model wrote.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch

from core.config import WalksConfig
from core.errors import DataError


@dataclass(frozen=True)
class Graph:
    n_nodes: int
    succ: np.ndarray  # (n_nodes, out_degree) successor ids
    adj: np.ndarray  # (n_nodes, n_nodes) bool
    is_a: np.ndarray  # (n_nodes,) bool
    is_b: np.ndarray  # (n_nodes,) bool
    reach: (
        np.ndarray
    )  # (rule_k, n_nodes) bool: reach[j, u] = a walk from u stands on B after exactly j steps
    rule_k: int

    @property
    def bos(self) -> int:
        return self.n_nodes

    @property
    def vocab_size(self) -> int:
        return self.n_nodes + 1

    def spec_hash(self) -> str:
        """Stands in for a tokenizer hash: the token meanings come from the graph."""
        h = hashlib.sha256()
        h.update(self.succ.tobytes())
        h.update(self.is_a.tobytes())
        h.update(self.is_b.tobytes())
        h.update(json.dumps({"k": self.rule_k}).encode())
        return h.hexdigest()[:16]


# -----------------------------------------------------------------------------
# the graph


def _reach_exact(is_b: np.ndarray, succ: np.ndarray, k: int) -> np.ndarray:
    """reach[j, u]: some walk of exactly j steps from u ends on B (j < k)."""
    reach = np.zeros((k, len(is_b)), bool)
    reach[0] = is_b
    for j in range(1, k):
        reach[j] = reach[j - 1][succ].any(axis=1)
    return reach


def make_graph(cfg: WalksConfig) -> Graph:
    """A random out-regular digraph where the rule can always be kept: every
    node has a successor outside B, and from every A node some successor
    reaches B in exactly rule_k - 1 more steps. One draw, then repairs (an A
    node that cannot keep its promise is demoted), so it is fast at any size.
    Deterministic in cfg.seed."""
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.n_nodes
    # out_degree distinct successors per node, never itself: sample from n-1 and skip u
    keys = rng.random((n, n - 1)) if n <= 4096 else None
    if keys is not None:
        succ = np.argpartition(keys, cfg.out_degree, axis=1)[:, : cfg.out_degree]
    else:
        succ = np.stack([rng.choice(n - 1, cfg.out_degree, replace=False) for _ in range(n)])
    succ = succ + (succ >= np.arange(n)[:, None])
    perm = rng.permutation(n)
    n_a = max(1, round(cfg.class_a_frac * n))
    n_b = max(1, round(cfg.class_b_frac * n))
    is_a = np.zeros(n, bool)
    is_b = np.zeros(n, bool)
    is_a[perm[:n_a]] = True
    is_b[perm[n_a : n_a + n_b]] = True
    non_b = np.flatnonzero(~is_b)
    for u in np.flatnonzero(is_b[succ].all(axis=1)):  # repair: give it one way out of B
        choices = [v for v in non_b if v != u and v not in succ[u]]
        succ[u, 0] = choices[rng.integers(len(choices))]
    reach = _reach_exact(is_b, succ, cfg.rule_k)
    is_a &= np.r_[[reach[cfg.rule_k - 1][succ[u]].any() for u in range(n)]]
    if not is_a.any():
        raise DataError(
            "data.walks: no A node can keep the rule on this graph; raise out_degree or class_b_frac, or change rule_k"
        )
    adj = np.zeros((n, n), bool)
    adj[np.arange(n)[:, None], succ] = True
    return Graph(n, succ, adj, is_a, is_b, reach, cfg.rule_k)


# -----------------------------------------------------------------------------
# the corpus


def holdout_starts(g: Graph, cfg: WalksConfig) -> np.ndarray:
    rng = np.random.default_rng([cfg.seed, 7])
    n_hold = max(1, round(cfg.holdout_frac * g.n_nodes))
    mask = np.zeros(g.n_nodes, bool)
    mask[rng.permutation(g.n_nodes)[:n_hold]] = True
    return mask


NONE = 10**6  # "no promise open"


def _step_promise(g: Graph, left: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Advance the promise counters after stepping onto `nxt`."""
    left = np.where(left < NONE, left - 1, left)
    left = np.where(left == 0, NONE, left)  # a promise falls due (kept or broken) and closes
    return np.where(
        (left >= NONE) & g.is_a[np.minimum(nxt, g.n_nodes - 1)] & (nxt < g.n_nodes), g.rule_k, left
    )


def make_walks(g: Graph, starts: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Walks of `length` tokens (BOS + length-1 nodes) that keep edges and rule.
    Vectorised over walks: each step picks a uniform successor among those
    that keep the open promise (or that avoid B when none is open)."""
    n = len(starts)
    out = np.empty((n, length), dtype=np.int64)
    out[:, 0] = g.bos
    cur = starts.astype(np.int64)
    out[:, 1] = cur
    left = np.where(g.is_a[cur], g.rule_k, NONE)  # steps until the open promise falls due
    for t in range(2, length):
        cand = g.succ[cur]  # (n, d)
        pending = left < NONE
        due_in = np.clip(left - 1, 0, g.rule_k - 1)  # steps from the successor to the deadline
        ok = np.where(pending[:, None], g.reach[due_in[:, None], cand], ~g.is_b[cand])
        keys = rng.random(cand.shape) + (~ok) * 2.0  # uniform among the allowed
        nxt = cand[np.arange(n), keys.argmin(axis=1)]
        left = _step_promise(g, left, nxt)
        out[:, t] = nxt
        cur = nxt
    return out


def make_corpus(
    cfg: WalksConfig, context: int, val_fraction: float
) -> tuple[Graph, torch.Tensor, torch.Tensor]:
    """(graph, train walks, val walks); each walk has context + 1 tokens so a
    window gives `context` inputs and `context` shifted targets."""
    g = make_graph(cfg)
    held = holdout_starts(g, cfg)
    rng = np.random.default_rng([cfg.seed, 11])
    n_val = max(cfg.eval_walks, round(val_fraction * cfg.n_walks))
    n_train = max(1, cfg.n_walks - n_val)
    train_starts = rng.choice(np.flatnonzero(~held), n_train)
    val_starts = rng.choice(np.flatnonzero(held), n_val)
    train = make_walks(g, train_starts, context + 1, rng)
    val = make_walks(g, val_starts, context + 1, rng)
    return g, torch.from_numpy(train), torch.from_numpy(val)


# -----------------------------------------------------------------------------
# scoring what a model wrote


def score_walks(g: Graph, walks: np.ndarray, prompt_len: int) -> dict[str, float]:
    edge, checks, kept = _score_counts(g, walks, prompt_len)
    return {"edge_compliance": edge, "rule_compliance": kept / checks if checks else 1.0}


def _score_counts(g: Graph, walks: np.ndarray, prompt_len: int) -> tuple[float, int, int]:
    """edge_compliance: share of generated steps that follow an edge.
    rule_compliance = kept / checks, over the generated nodes where the rule
    says something: a promise falling due (kept when the node is in B) and a
    step onto B while no promise is open (always a breach: B is off limits).
    Promises are tracked along the whole walk as the generator does; B in the
    middle of an open promise is allowed. A generated BOS breaks the edge and
    the promise."""
    nodes = walks[:, 1:]  # drop BOS
    p = prompt_len - 1  # index (in nodes) of the first generated node
    prev, nxt = nodes[:, p - 1 : -1], nodes[:, p:]
    valid = (prev < g.n_nodes) & (nxt < g.n_nodes)
    edge_ok = valid & g.adj[np.minimum(prev, g.n_nodes - 1), np.minimum(nxt, g.n_nodes - 1)]
    edge = float(edge_ok.mean()) if edge_ok.size else 0.0

    is_b = np.pad(g.is_b, (0, 1))  # BOS is not B
    first = np.minimum(nodes[:, 0], g.n_nodes - 1)
    left = np.where(g.is_a[first] & (nodes[:, 0] < g.n_nodes), g.rule_k, NONE)
    checks, kept = 0, 0
    for i in range(1, nodes.shape[1]):
        if i >= p:
            on_b = is_b[nodes[:, i]]
            falls_due = left == 1
            checks += int(falls_due.sum()) + int((on_b & (left >= NONE)).sum())
            kept += int((falls_due & on_b).sum())
        left = _step_promise(g, left, nodes[:, i])
    return edge, checks, kept


def walk_is_valid(g: Graph, walk: np.ndarray, prompt_len: int) -> bool:
    edge, checks, kept = _score_counts(g, walk[None, :], prompt_len)
    return edge == 1.0 and kept == checks


def format_walk(g: Graph, tokens: list[int] | np.ndarray) -> str:
    def name(t: int) -> str:
        if t == g.bos:
            return "<bos>"
        tag = "A" if g.is_a[t] else "B" if g.is_b[t] else ""
        return f"{t}{tag}"

    return " ".join(name(int(t)) for t in tokens)
