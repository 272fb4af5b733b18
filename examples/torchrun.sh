#!/bin/bash
# Multi-node DDP with torchrun (run this on every node; NODE_RANK=0 on the first, MASTER_ADDR its address).
# Lightning detects torchrun's environment (TorchElasticEnvironment) and uses its ranks.
set -euo pipefail
: "${NNODES:=2}" "${NODE_RANK:?set NODE_RANK}" "${MASTER_ADDR:?set MASTER_ADDR}" "${GPUS_PER_NODE:=8}"
uv run torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE" \
    --master_addr "$MASTER_ADDR" --master_port 29500 \
    -m trident_vision fit --preset ddp --preset bf16 \
    --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS_PER_NODE"
