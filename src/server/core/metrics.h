/*
 * metrics.h - the node's counters and gauges in Prometheus' text format,
 * for /metrics over any protocol.
 */
#ifndef SF_SRV_METRICS_H
#define SF_SRV_METRICS_H

#include <stddef.h>

#include "node.h"

#define SF_METRICS_MAX 32768 /* room the text always fits in */

/* sf__metrics_render writes the metrics text into buf (cap bytes, at most
 * SF_METRICS_MAX used) and returns its length. The scrape being answered
 * counts as one more 200 on endpoint self (SF_EP_COUNT: none). */
size_t sf__metrics_render(sf_node *n, char *buf, size_t cap, sf_ep self);

#endif /* SF_SRV_METRICS_H */
