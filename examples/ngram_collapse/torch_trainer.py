#!/usr/bin/python3
"""The n-gram collapse example with a small PyTorch model instead of counts (make example-pytorch).

Everything but the model is trainer.py: the same human text, the same recursive loop, the same
GenerationSummary per generation through the loopwarden client, the same handling of breakers.
The model is a neural trigram language model (Bengio et al. 2003, in miniature): the two
previous tokens' embeddings (32 each) -> a tanh layer of 64 -> a softmax over the vocabulary.
Every generation is trained from scratch (Adam, --epochs passes over its training tokens) and
samples at temperature 1.

Needs Debian's python3-torch (``make example-pytorch`` installs it). Same options as trainer.py,
plus --epochs; run with PYTHONPATH=<build>/python.
"""

import os
import sys

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - a usage error
    sys.exit(f"torch_trainer.py: can't import torch ({exc}); install Debian's python3-torch "
             "(make example-pytorch does)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trainer  # noqa: E402  (the loop, the summaries, the breakers)

EPOCHS = 5
HIDDEN = 64


class _Net(nn.Module):
    def __init__(self, vocabulary_size):
        super().__init__()
        self.embed = nn.Embedding(vocabulary_size + 1, 32)  # + 1: the start-of-sample token
        self.hidden = nn.Linear(64, HIDDEN)
        self.out = nn.Linear(HIDDEN, vocabulary_size)

    def forward(self, context):  # context: (batch, 2) token indices
        return self.out(torch.tanh(self.hidden(self.embed(context).flatten(1))))


class NeuralTrigram:
    """TrigramModel's interface (see trainer.py) over a small neural network."""

    name = "PyTorch neural trigram model"
    suffix = ".pt"

    def __init__(self, vocabulary, net):
        self.words = sorted(vocabulary, key=vocabulary.get)  # index -> token
        self.index = {w: i for i, w in enumerate(self.words)}
        self.net = net
        self.start = len(self.words)

    @classmethod
    def train(cls, documents, vocabulary, seed=0):
        torch.manual_seed(seed)
        torch.set_num_threads(1)  # a small model: threads cost more than they give
        model = cls(vocabulary, _Net(len(vocabulary)))
        contexts, targets = [], []
        for d in documents:
            ids = [model.start, model.start] + [model.index[w] for w in d]
            for i in range(2, len(ids)):
                contexts.append(ids[i - 2:i])
                targets.append(ids[i])
        x = torch.tensor(contexts)
        y = torch.tensor(targets)
        optimiser = torch.optim.Adam(model.net.parameters(), lr=5e-3)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(EPOCHS):
            order = torch.randperm(len(y))
            for batch in order.split(256):
                optimiser.zero_grad()
                loss_fn(model.net(x[batch]), y[batch]).backward()
                optimiser.step()
        model.net.eval()
        return model

    @torch.no_grad()
    def sample_many(self, rng, count, length):
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        context = torch.full((count, 2), self.start, dtype=torch.long)
        out = []
        for _ in range(length):
            probabilities = torch.softmax(self.net(context), dim=1)
            nxt = torch.multinomial(probabilities, 1, generator=generator)
            out.append(nxt)
            context = torch.cat([context[:, 1:], nxt], dim=1)
        ids = torch.cat(out, dim=1).tolist()
        return [[self.words[i] for i in row] for row in ids]

    def save(self, path, **extra):
        torch.save({"state": self.net.state_dict(), "words": self.words, **extra}, path)

    @classmethod
    def load(cls, path, vocabulary):
        data = torch.load(path)
        model = cls(vocabulary, _Net(len(vocabulary)))
        model.net.load_state_dict(data["state"])
        model.net.eval()
        return model


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--epochs" in args:
        at = args.index("--epochs")
        EPOCHS = int(args[at + 1])
        del args[at:at + 2]
    sys.exit(trainer.main(args, model_class=NeuralTrigram, run_prefix="torch"))
