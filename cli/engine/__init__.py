"""The Pulumi engine behind ``imctl deploy/destroy/plan/status --cloud X``: the only package that
uses Pulumi's Automation API (``pulumi.automation``).

What it does, per call: resolve where state and secrets live (``resolve_settings``), find and
version-check the ``pulumi`` CLI, open the stack (project ``imctl``, the inline program from
``stacks.program``), write the config the imctl flags asked for, run the operation with engine
events turned into ``ProgressEvent`` calls on an ``EventSink`` the command provides (the engine
only emits them; cli/progress_view.py and cli/output.py draw them), and turn every Pulumi
failure into an ``ImctlError`` with the CLI's exit code:

    ConcurrentUpdateError / backend lock      Locked               11
    StackNotFoundError                        StackNotFound         6
    pulumi CLI missing, too old, SDK missing  PrerequisiteMissing  10
    passphrase / cloud credentials rejected   CredentialsError      3
    a resource operation failed               ResourceFailure       4
    config the program rejects                UsageError            2
    program error, anything else              ImctlError            1

State: ``PULUMI_BACKEND_URL`` or ``file://$IMCTL_HOME/pulumi``. Secrets: the passphrase provider
(``PULUMI_CONFIG_PASSPHRASE`` / ``PULUMI_CONFIG_PASSPHRASE_FILE``) unless
``IMCTL_SECRETS_PROVIDER`` names a KMS (``awskms://...``, ``gcpkms://...``). Secrets travel in
the environment or on stdin, never on a command line (other users can read argv in ``ps``).

Importing this package imports no Pulumi package; every operation imports ``pulumi.automation``
when it runs, so ``imctl --help`` stays cheap and a missing SDK is an error with a fix.

The modules, in the order a call goes through them: ``settings`` (where state, secrets and the
CLI are), ``workspace`` (the CLI, the inline program, the stack), ``config`` (the stack's config,
read and written), ``roles`` (the writer after a recorded failover), ``staged`` (a deploy's
config written, previewed, applied or put back), ``operations`` (up, preview, destroy,
refresh), ``events`` (engine events -> ``ProgressEvent``), ``steps`` (a preview's planned
changes) and ``stateful`` (the resource types that hold data), ``pulumi_errors`` (Pulumi
failures -> ``ImctlError``), ``stack_outputs`` (the deployed outputs).
"""

from cli.engine.config import config_values, set_config, stack_config
from cli.engine.operations import deploy, destroy, preview, refresh
from cli.engine.stack_outputs import StackOutputs, outputs
from cli.engine.staged import Staged, staged

__all__ = [
    "StackOutputs",
    "Staged",
    "config_values",
    "deploy",
    "destroy",
    "outputs",
    "preview",
    "refresh",
    "set_config",
    "stack_config",
    "staged",
]
