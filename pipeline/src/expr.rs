//! GitLab's CI/CD expression language (`rules:if`, `only:variables`): to be written.
