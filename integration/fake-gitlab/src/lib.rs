//! A fake GitLab coordinator that the real gitlab-runner talks to in tests.
