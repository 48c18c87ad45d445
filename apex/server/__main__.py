"""`python -m apex.server --config PATH` runs the gateway (see apex.server.foreground)."""

from apex.server.foreground import main

raise SystemExit(main())
