"""torch.optim's spellings (issue 12, item 5): Adagrad and RMSprop are the
class names, AdaGrad and RMSProp the same classes under their earlier names."""

import pickle

import fastadapt as fa
from fastadapt import optim as optimizers


def test_torch_spellings_are_primary_and_the_old_names_alias_them():
    assert fa.Adagrad is fa.AdaGrad is optimizers.Adagrad is optimizers.AdaGrad
    assert fa.RMSprop is fa.RMSProp is optimizers.RMSprop is optimizers.RMSProp
    assert fa.Adagrad.__name__ == "Adagrad" and fa.RMSprop.__name__ == "RMSprop"
    assert repr(fa.RMSProp(lr=0.1)).startswith("RMSprop(lr=0.1, ")
    assert fa.Adagrad.algorithm == "adagrad" and fa.RMSprop.algorithm == "rmsprop"     # checkpoints unchanged
    assert type(fa.make_optimizer("adagrad")) is fa.Adagrad and type(fa.make_optimizer("RMSprop")) is fa.RMSprop
    assert isinstance(fa.AdaGrad(), fa.Adagrad)
    assert {"Adagrad", "RMSprop", "AdaGrad", "RMSProp"} <= set(fa.__all__)


def test_a_state_dict_moves_between_the_spellings():
    opt = fa.RMSProp(momentum=0.9)
    again = fa.RMSprop(momentum=0.9)
    again.load_state_dict(pickle.loads(pickle.dumps(opt.state_dict())))
    assert again.hyperparameters == opt.hyperparameters
