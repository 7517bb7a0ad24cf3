/* SPDX-License-Identifier: MIT */
#pragma once

#include "engine/engine.h"

/* The steps of apply, in order. Each lives in its own file under steps/. */
extern const Step step_preflight;
extern const Step step_disk;
extern const Step step_user;
extern const Step step_storage;
extern const Step step_daemon;
extern const Step step_agent;
extern const Step step_tenants;      /* the tenants set up, and one removed from the configuration */
extern const Step step_credentials;   /* last: the live groups, after every restart */
