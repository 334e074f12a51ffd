# Source this file (`source configure_development.sh`) to use ./development_database.db.
unset TESTING_SETTINGS
export DEVELOPMENT_SETTINGS=1
