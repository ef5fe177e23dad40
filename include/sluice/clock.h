/* Clocks, in microseconds. */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC: for limits and durations. */
uint64_t sl_clock_mono_us(void);

/* CLOCK_REALTIME: for timestamps in logs. */
uint64_t sl_clock_real_us(void);

#endif
