// Every rule the core knows: its header, and its name in FASTADAPT_RULES (the
// order of fastadapt._core.RULES). Adding a rule = one header in this folder
// and these two lines; nothing else in cpp/ changes.
#pragma once

#include "adadelta.hpp"
#include "adafactor.hpp"
#include "adagrad.hpp"
#include "adam.hpp"
#include "adamax.hpp"
#include "dadapt_adagrad.hpp"
#include "dadapt_sgd.hpp"
#include "dog.hpp"
#include "hd_adam.hpp"
#include "hd_sgd.hpp"
#include "dadapt_adam.hpp"
#include "lamb.hpp"
#include "lars.hpp"
#include "lion.hpp"
#include "muon.hpp"
#include "nadam.hpp"
#include "prodigy.hpp"
#include "radam.hpp"
#include "rmsprop.hpp"
#include "sgd.hpp"
#include "schedulefree_adamw.hpp"
#include "schedulefree_sgd.hpp"

#define FASTADAPT_RULES Adam, Adagrad, RMSprop, SGD, NAdam, RAdam, Adamax, Adadelta, Adafactor, Lion, LAMB, LARS, Muon, \
    MuonCommit, \
    DoG, LDoG, \
    HDSGD, HDAdam, \
    DAdaptSGD, DAdaptAdaGrad, \
    ScheduleFreeAdamW, ScheduleFreeSGD, \
    Prodigy, DAdaptAdam
