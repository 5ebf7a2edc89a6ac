from collections import Counter

import numpy as np

from core.config import WalksConfig
from core.walks import make_corpus, score_walks


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
