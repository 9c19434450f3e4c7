import numpy as np
import torch
from torch import nn

from attnrec.explain.lrp import attn_lrp, rules
from attnrec.model.sequences import left_pad
from tests.explain.test_explain import tiny


def test_the_rules_change_only_gradients_and_leave_no_trace():
    m = tiny()
    seq = torch.as_tensor(left_pad([np.array([3, 9, 4, 12]), np.array([5, 6])], m.config.max_len))
    user = [torch.tensor([2, 1])]
    before = m.score(seq, torch.tensor([[11], [7]]), user)
    with rules(m):
        during = m.score(seq, torch.tensor([[11], [7]]), user)
    torch.testing.assert_close(during, before)  # the forward pass is the model's own
    assert not any("forward" in vars(mod) for mod in m.modules())  # every patched forward is gone
    assert not any(mod._forward_hooks for mod in m.modules())
    torch.testing.assert_close(m.score(seq, torch.tensor([[11], [7]]), user), before)


def test_relevance_is_gradient_times_input_with_the_rules():
    m = tiny()
    x = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0], requires_grad=True)
    with rules(m):
        gelu = next(mod for mod in m.modules() if isinstance(mod, nn.GELU))
        (gradient,) = torch.autograd.grad(gelu(x).sum(), x)
    expected = torch.nn.functional.gelu(x) / x
    expected[2] = 0.5  # the limit at 0
    torch.testing.assert_close(gradient, expected.detach())  # identity rule: relevance out = relevance in


def test_padding_gets_no_relevance_and_batching_changes_nothing():
    m = tiny()
    histories = [np.array([3, 9, 4, 12]), np.array([5, 6])]
    seq = torch.as_tensor(left_pad(histories, m.config.max_len))
    user = [torch.tensor([2, 1])]
    both = attn_lrp(m, seq, user, torch.tensor([11, 7]))
    assert float(both[1].parts[0][:2].abs().sum()) == 0.0  # the two padding positions of the shorter history
    alone = attn_lrp(m, torch.as_tensor(histories[1][None]), [torch.tensor([1])], torch.tensor([7]))[0]
    np.testing.assert_allclose(both[1].parts[0][2:].numpy(), alone.parts[0].numpy(), rtol=1e-4, atol=1e-6)
    assert abs(both[1].score - alone.score) < 1e-4 and float(alone.parts[0].abs().sum()) > 0
