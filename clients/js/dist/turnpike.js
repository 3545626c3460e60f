// Placeholder: generated from clients/js/src by `npm run bundle` in clients/js (do not edit).
export {};
