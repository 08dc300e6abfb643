/*
 * node.c - what every layer of the node shares: the labels of the
 * endpoints and the codes of the statuses the stats are kept by, and each
 * worker's scratch and Date header.
 */
#include "node.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const sf__ep_label[SF_EP_COUNT] = {
#define SF__EP_LABEL(name, label) label,
    SF_EP_MAP(SF__EP_LABEL)
#undef SF__EP_LABEL
};

const int sf__st_code[SF_ST_COUNT] = {
#define SF__ST_CODE(code, reason) code,
    SF_STATUS_MAP(SF__ST_CODE)
#undef SF__ST_CODE
};

int sf__worker_init(sf_worker *w, sf_node *node, sf_srv_stats *stats) {
  memset(w, 0, sizeof *w);
  w->node = node;
  w->stats = stats;
  w->ids = malloc(sizeof *w->ids *
                  (node->cfg->max_batch ? node->cfg->max_batch : 1));
  if (!w->ids)
    return -1;
  sf__worker_set_date(w, (int64_t)time(NULL));
  return 0;
}

void sf__worker_free(sf_worker *w) {
  free(w->ids);
  w->ids = NULL;
}

void sf__worker_set_date(sf_worker *w, int64_t unix_s) {
  time_t t = (time_t)unix_s;
  struct tm tm;
  gmtime_r(&t, &tm);
  w->date_len = strftime(w->date, sizeof w->date,
                         "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}
