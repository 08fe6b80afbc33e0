"""The plugin host: the hooks and spec records plugins give (`plugin`, `specs`), parameter schemas
from factory signatures (`params`), recipes (`recipe`) and the descriptions `medrecon plugins`
prints (`describe`)."""
