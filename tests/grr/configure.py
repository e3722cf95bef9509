#!/usr/bin/env python
"""GRR's own installer steps for a test installation, run with the GRR virtualenv's python.

  configure.py server FLEETSPEAK_CONFIG CONFIG_DIR HTTPS_PORT ADMIN_PORT GRR_PORT -- ARGS...
      Runs `grr_config_updater ARGS...` (`initialize --noprompt --use_fleetspeak ...`). Its
      Fleetspeak part has fixed ports (4443, 4444, 11111), a config directory inside the
      virtualenv and the `fleetspeak-config` of the `fleetspeak-server-bin` package; these
      five are replaced, so that tests can run side by side and choose the configurator
      (Fleetgate's or Go's). A missing `fleetspeak` user is not an error (see below).
      Everything else is GRR's code unchanged.

  configure.py client SERVER_CONFIG WRITEBACK OUT CLIENT_DIR
      Writes the GRR client's config derived from the server's (SERVER_CONFIG and its
      WRITEBACK) as GRR's client repacking does (`build_helpers.GetClientConfig` in the client
      context), with the client's own writeback and logs under CLIENT_DIR instead of the
      server's files.
"""

import sys


def server(argv):
  command, config_dir, https_port, admin_port, grr_port = argv[:5]
  if argv[5] != "--":
    sys.exit("configure.py server: expected -- before grr_config_updater's arguments")
  from grr_response_server.bin import config_updater_util

  original_init = config_updater_util.FleetspeakConfig.__init__

  def init(self):
    original_init(self)
    self.config_dir = config_dir
    self._fleetspeak_config_command_path = command
    self.https_port = int(https_port)
    self.admin_port = int(admin_port)
    self.grr_port = int(grr_port)

  config_updater_util.FleetspeakConfig.__init__ = init

  # Run as root, GRR chowns its Fleetspeak files to the `fleetspeak` user, and fails with
  # KeyError where that user does not exist (the packages create it; a test machine has none).
  import pwd

  getpwnam = pwd.getpwnam

  def getpwnam_or_none(name):
    try:
      return getpwnam(name)
    except KeyError:
      return None

  pwd.getpwnam = getpwnam_or_none
  sys.argv = ["grr_config_updater"] + argv[6:]
  from grr_response_server.distro_entry import ConfigUpdater

  ConfigUpdater()


def client(argv):
  server_config, writeback, out, client_dir = argv
  import os

  import yaml
  from grr_response_client_builder import build_helpers
  from grr_response_core import config
  from grr_response_core.lib import config_lib

  config_lib.LoadConfig(config.CONFIG, server_config)
  config.CONFIG.SetWriteBack(writeback)
  config_lib.SetPlatformArchContext()
  context = list(config.CONFIG.context) + ["Client Context"]
  text = build_helpers.GetClientConfig(context, validate=False, deploy_timestamp=False)
  values = yaml.safe_load(text)
  # The server's file names came along; the client has its own.
  values.pop("Config.includes", None)
  values["Config.writeback"] = os.path.join(client_dir, "grr-client.local.yaml")
  values["Logging.path"] = client_dir
  values["Logging.engines"] = "file,stderr"
  values["Logging.verbose"] = True
  with open(out, "w") as f:
    yaml.safe_dump(values, f)


if __name__ == "__main__":
  if len(sys.argv) < 2 or sys.argv[1] not in ("server", "client"):
    sys.exit(__doc__)
  {"server": server, "client": client}[sys.argv[1]](sys.argv[2:])
