export { ENV, loadConfig, loadEnvFile, redactUrl, type Config } from './config.js';
