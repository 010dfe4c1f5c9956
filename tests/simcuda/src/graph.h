// SPDX-License-Identifier: Apache-2.0
//
// CUDA graphs as stream capture builds them: an ordered list of nodes. Capture appends
// in issue order and replay runs the nodes in that order, one stream operation per
// launch — a valid schedule of the captured dependencies (it only adds ordering).
#ifndef SIMCUDA_GRAPH_H_
#define SIMCUDA_GRAPH_H_

#include <cuda.h>

#include <vector>

#include "work.h"

namespace simcuda {

struct Graph;

struct GraphNode {
  Graph* graph = nullptr;
  CUgraphNodeType type = CU_GRAPH_NODE_TYPE_EMPTY;
  Work work;
};

struct Graph {
  Context* ctx = nullptr;
  std::vector<GraphNode*> nodes;
};

struct GraphExec {
  Context* ctx = nullptr;
  Graph* source = nullptr;  // for mapping nodes of the source graph to our copies
  std::vector<Work> works;  // one per source node, same order
};

// Appends work to the graph being captured by `stream`. REQUIRES: Driver::mu held.
void AppendCaptured(Stream* stream, Work work);

}  // namespace simcuda

#endif  // SIMCUDA_GRAPH_H_
