from ptytui.cli import entry

entry()
