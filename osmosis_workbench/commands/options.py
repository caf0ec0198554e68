"""The options ``osmosis test`` and ``osmosis-workbench`` share, and their one resolution.

Both commands describe the engine the same way: where rollouts run (``-m`` or ``--url``), the
dataset, the model, the rollout timeout. ``add_engine_options`` defines those options once;
``resolve_config`` turns them into an ``EngineConfig``, with every check (and its message
naming the fix) written once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.config import ConfigError, EngineConfig, default_model


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """The server, dataset, model and timeout options of both commands."""
    g = p.add_argument_group("rollout server (one of -m or --url)")
    g.add_argument(
        "-m",
        "--module",
        metavar="MODULE:ATTR",
        default=None,
        help="serve this agent loop in-process, e.g. server:agent_loop",
    )
    g.add_argument(
        "--url",
        action="append",
        default=[],
        help="a remote rollout server (osmosis test: repeat to spread rows over several)",
    )
    g.add_argument(
        "--api-key",
        default=None,
        help="with --url: the rollout servers' key; otherwise: the model's key",
    )
    g.add_argument("--server-api-key", default=None, help="the rollout servers' key")
    g.add_argument(
        "--trainer-host",
        default="127.0.0.1",
        help="with --url: address the local trainer listens on (servers call it)",
    )
    g.add_argument(
        "--trainer-port",
        type=int,
        default=0,
        help="with --url: port of the local trainer (default: a free one)",
    )
    p.add_argument(
        "-d",
        "--dataset",
        default=None,
        help=".jsonl, .json, .parquet or .csv with system_prompt, user_prompt, ground_truth",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=None,
        help="'openai/NAME' (or a bare NAME), any litellm 'provider/name', "
        "'replay:FILE' (a recorded cassette), 'script:FILE' (answers per row and turn) or "
        "'human' (you answer; workbench only) (default: the cassette.jsonl next to the "
        "dataset or the agent module)",
    )
    g.add_argument(
        "--base-url",
        default=None,
        help="an OpenAI-compatible server (vLLM, SGLang, Ollama...), e.g. http://localhost:8000/v1",
    )
    g.add_argument(
        "--model-api-key",
        default=None,
        help="model provider key (default: the provider's environment variable)",
    )
    g.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="write every model exchange to this cassette, for later replay",
    )
    p.add_argument(
        "--rollout-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="end a rollout that takes longer (default 600)",
    )


def resolve_config(
    args: argparse.Namespace, *, need_dataset: bool = False, **run: Any
) -> EngineConfig:
    """The ``EngineConfig`` the engine options in ``args`` describe, plus ``run`` fields.

    Raises ``ConfigError`` naming the option and the fix.
    """
    urls = tuple(args.url or ())
    if not args.module and not urls:
        raise ConfigError(
            "give the agent with -m MODULE:ATTR (e.g. -m server:agent_loop), "
            "or a rollout server with --url URL"
        )
    dataset = args.dataset
    if need_dataset and not dataset:
        raise ConfigError("give a dataset with -d FILE (.jsonl, .json, .parquet or .csv)")
    if dataset and not Path(dataset).is_file():
        raise ConfigError(
            f"dataset {dataset!r} not found: give the path of a .jsonl, .json, .parquet or "
            ".csv file with system_prompt, user_prompt and ground_truth columns"
        )
    # --api-key means the servers' key with --url, the model's otherwise.
    model_key, server_key = args.model_api_key, args.server_api_key
    if args.api_key:
        if urls:
            server_key = server_key or args.api_key
        else:
            model_key = model_key or args.api_key
    config = EngineConfig(
        module=args.module,
        urls=urls,
        server_api_key=server_key,
        trainer_host=args.trainer_host,
        trainer_port=args.trainer_port,
        dataset=dataset,
        # Offline by default: the cassette next to the dataset or the agent.
        model=args.model or default_model(dataset, args.module),
        base_url=args.base_url,
        model_api_key=model_key,
        record=args.record,
        rollout_timeout_s=600.0 if args.rollout_timeout is None else args.rollout_timeout,
        **run,
    )
    config.require_model()
    return config
