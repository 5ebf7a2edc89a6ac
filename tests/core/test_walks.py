from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core import config
from core.config import WalksConfig
from core.walks import Graph, make_corpus, score_walks, walk_is_valid


def test_corpus_keeps_edges_and_rule_and_is_deterministic():
    cfg = WalksConfig()
    g, train, val = make_corpus(cfg, 32, 0.1)
    assert score_walks(g, train.numpy(), 4) == {"edge_compliance": 1.0, "rule_compliance": 1.0}
    _, train2, _ = make_corpus(cfg, 32, 0.1)
    assert (train == train2).all()
    # val walks start at held-out nodes that no training walk starts at
    assert not set(val[:, 1].tolist()) & set(train[:, 1].tolist())


def test_rule_needs_context_greedy_bigram_fails_the_gate():
    """A decoder that only knows 'most likely next node given this node' keeps
    every edge but not the rule: the gate measures something a model must
    learn from its context."""
    cfg = WalksConfig()
    g, train, val = make_corpus(cfg, 32, 0.1)
    t = train.numpy()
    best = np.arange(g.vocab_size)
    for u in range(g.n_nodes):
        c = Counter(t[:, 2:][t[:, 1:-1] == u].tolist())
        if c:
            best[u] = c.most_common(1)[0][0]
    w = val.numpy()[:1000].copy()
    for i in range(cfg.prompt_len, w.shape[1]):
        w[:, i] = best[w[:, i - 1]]
    s = score_walks(g, w, cfg.prompt_len)
    assert s["edge_compliance"] > 0.95
    assert s["rule_compliance"] < 0.6


def test_broken_walks_score_low():
    cfg = WalksConfig()
    g, _, val = make_corpus(cfg, 32, 0.1)
    w = val.numpy()[:200].copy()
    w[:, 10:] = g.bos  # the model wrote BOS instead of nodes
    s = score_walks(g, w, cfg.prompt_len)
    assert s["edge_compliance"] < 0.8


# --- the rule, clause by clause, on hand-written walks ------------------------


def _tiny_graph() -> Graph:
    """Node 0 is A, node 1 is B, 2..4 are plain; every edge exists (loops too); rule_k 2."""
    n, k = 5, 2
    adj = np.ones((n, n), bool)
    succ = np.array([[v for v in range(n) if v != u] for u in range(n)])
    is_a = np.arange(n) == 0
    is_b = np.arange(n) == 1
    return Graph(n, succ, adj, is_a, is_b, np.zeros((k, n), bool), k)


@pytest.mark.parametrize(
    "nodes, rule",
    [
        ([2, 0, 3, 1, 2], 1.0),  # A, then B exactly 2 steps later: kept
        ([2, 0, 1, 3, 4], 0.0),  # B within 2 steps but not exactly 2: broken
        ([2, 0, 3, 4, 2], 0.0),  # no B at the deadline: broken
        ([2, 3, 1, 4, 2], 0.0),  # B while no promise is open: off limits
        ([2, 0, 3, 1, 1], 0.5),  # kept, then B again once the promise closed
        ([2, 0, 0, 1, 3], 1.0),  # an A inside an open promise opens nothing
        ([2, 3, 4, 2, 3], 1.0),  # no promise, no B: nothing to break
    ],
)
def test_rule_score_on_hand_written_walks(nodes, rule):
    g = _tiny_graph()
    walk = np.array([[g.bos, *nodes]])
    assert score_walks(g, walk, 2) == {"edge_compliance": 1.0, "rule_compliance": rule}
    assert walk_is_valid(g, walk[0], 2) == (rule == 1.0)


def test_words_say_the_rule_the_generator_keeps():
    doc = WalksConfig.__dataclass_fields__  # the docstring follows the field
    src = Path(config.__file__).read_text()
    line = src[src.index("    rule_k: int") :].splitlines()[1]
    assert "exactly" in line and "within" not in line and "off limits" in line
    assert "rule_k" in doc
    demo = Path("profiles/demo-walks.yaml").read_text()
    assert "within" not in demo.split("rule_k:")[1].splitlines()[0]
