//! Job records and the on-disk job store (see the jobs issue).
