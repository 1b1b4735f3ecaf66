"""Frozen work done once: with a frozen backbone and a head that only reads its output, encode each
example a single time and train the head on the cached features.

Training the `head` method otherwise runs the whole backbone over every example in every epoch (and
over the validation split after each one) to produce features that never change. The cached features
are computed with the backbone in eval mode, as a linear probe is meant to see them: dropout inside the
frozen backbone is off, the head's own dropout (applied in `classify`) still works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def applies(method_name: str, classifier) -> bool:
    """Cache only when nothing before the head trains and the head declares its features cacheable."""
    from promptft_cli.methods import METHODS

    return (METHODS[method_name].frozen_backbone
            and getattr(getattr(classifier, "head", None), "cacheable_features", False)
            and not getattr(classifier, "virtual_tokens", 0)
            and not any(p.requires_grad for p in classifier.backbone.parameters()))


class FeatureCache:
    """Features of each split's examples (row i of a table = example i of the split), filled once by `fill`.

    The loader can be made before `fill` (it reads the table when a batch is built), so the training loop
    can build its loader first and pay for the encoding inside its timed part.
    """

    def __init__(self) -> None:
        self.tables: dict[str, "torch.Tensor"] = {}

    def fill(self, classifier, splits: dict[str, Any], batch_size: int) -> "FeatureCache":
        """Run the backbone once over every example of `splits` (name → EncodedSplit)."""
        for name, split in splits.items():
            self.tables[name] = encode(classifier, split, batch_size)
        return self

    def loader(self, split: str, encoded, batch_sampler):
        """Batches of cached features and the labels of `encoded` (the split's EncodedSplit) in the sampler's
        order (accelerate can shard it like any loader)."""
        import torch

        labels = encoded.labels
        targets = torch.tensor(labels, dtype=torch.long)

        def collate(idx: list[int]) -> dict[str, torch.Tensor]:
            table = self.tables[split]
            rows = torch.tensor(idx, dtype=torch.long)
            return {"features": table[rows.to(table.device)], "labels": targets[rows]}

        return torch.utils.data.DataLoader(range(len(labels)), batch_sampler=batch_sampler, collate_fn=collate,
                                           generator=torch.Generator())

    def infer(self, classifier, split: str):
        """Class probabilities of a split from its cached features: what the classification task's `infer` gives,
        without the backbone."""
        import torch

        table = self.tables[split]
        classifier.eval()
        with torch.inference_mode():
            if not len(table):
                return torch.empty((0, classifier.num_labels)).numpy()
            return torch.softmax(classifier(features=table).float(), dim=-1).cpu().numpy()


def encode(classifier, split, batch_size: int) -> "torch.Tensor":
    """The head's input features for every example, in the split's order (length-sorted batches, no grad)."""
    import torch

    from promptft_cli.modeling.batching import collate, inference_batches, pad_token_id

    device = next(classifier.parameters()).device
    pad_id = pad_token_id(classifier)
    table = None
    was_training = classifier.training
    classifier.eval()
    with torch.inference_mode():
        for idx in inference_batches(split.lengths, batch_size):
            batch = {k: v.to(device) for k, v in collate(split, idx, pad_id).items() if k != "labels"}
            feats = classifier.features(**batch)
            if table is None:
                table = torch.empty((len(split), *feats.shape[1:]), dtype=feats.dtype, device=device)
            table[idx] = feats
    classifier.train(was_training)
    # Made under inference_mode, the table would refuse to be saved for backward; a clone outside is a plain tensor.
    return table.clone() if table is not None else torch.empty(0)
